"""A worker submits while the owner retires the label the answer uses (PostgreSQL).

The answer was checked against the old label set before the change committed; the submit must
wait for the change and then refuse the answer, never store a live answer with a retired label.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from annotation.models import Annotation, Project
from annotation.schema import schema_change_apply, schema_change_plan
from crowd.services import assignment_claim_next, assignment_submit
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_submit_racing_a_retirement_waits_and_is_refused():
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, overlap=1)
    ItemFactory(project=project)
    worker = make_annotator(project)
    assignment = assignment_claim_next(worker=worker, project=project)
    operations = [{"op": "retire", "label": "negative"}]
    plan = schema_change_plan(project=project, operations=operations)
    locked, outcome = threading.Event(), {}

    def owner_changes_the_labels() -> None:
        try:
            with transaction.atomic():
                Project.objects.select_for_update().get(pk=project.pk)
                locked.set()
                time.sleep(0.5)  # the worker's submit arrives while the change runs
                schema_change_apply(
                    project=project, operations=operations, token=plan.token, user=owner
                )
        finally:
            connection.close()

    def worker_submits() -> None:
        locked.wait(5)
        stale = Project.objects.get(pk=project.pk)  # still the old label set
        assignment.project = stale
        try:
            assignment_submit(
                assignment=assignment, worker=worker, value={"label": "negative"}, duration_ms=900
            )
            outcome["stored"] = True
        except ValidationError as error:
            outcome["error"] = error.message_dict
        finally:
            connection.close()

    threads = [
        threading.Thread(target=owner_changes_the_labels),
        threading.Thread(target=worker_submits),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert "stored" not in outcome
    assert "label" in outcome["error"]
    assert not Annotation.objects.filter(
        superseded_at__isnull=True, value__label="negative"
    ).exists()
    assert Project.objects.get(pk=project.pk).schema_version == 2
