"""Two owners removing each other at the same moment on PostgreSQL: one of them must stay."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from annotation.models import ProjectMember
from annotation.services import project_member_set
from crowd.services.members import project_member_remove
from tests.annotation.factories import ProjectFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 10  # each wait is normally a few milliseconds; this only stops a hung test


def test_owners_removing_each_other_concurrently_leave_one_owner():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    project = ProjectFactory(created_by=alice)
    project_member_set(project=project, user=bob, role=ProjectMember.Role.OWNER)
    bob_removed, commit = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def alice_removes_bob() -> None:
        try:
            with transaction.atomic():
                project_member_remove(project=project, user_id=bob.pk, actor=alice)
                bob_removed.set()
                commit.wait(WAIT_SECONDS)  # hold the locks while bob acts
        finally:
            connection.close()

    def bob_removes_alice() -> None:
        bob_removed.wait(WAIT_SECONDS)
        try:
            project_member_remove(project=project, user_id=alice.pk, actor=bob)
            outcome["bob"] = "removed alice"
        except ValidationError as error:
            outcome["bob"] = " ".join(error.messages)
        finally:
            connection.close()

    first = threading.Thread(target=alice_removes_bob)
    second = threading.Thread(target=bob_removes_alice)
    first.start()
    second.start()
    assert bob_removed.wait(WAIT_SECONDS)
    time.sleep(0.3)
    waiting = second.is_alive()  # blocked on the owner rows alice's removal holds
    commit.set()
    first.join(WAIT_SECONDS)
    second.join(WAIT_SECONDS)

    assert waiting
    assert "at least one owner" in outcome["bob"]
    owners = ProjectMember.objects.filter(project=project, role=ProjectMember.Role.OWNER)
    assert list(owners.values_list("user__username", flat=True)) == ["alice"]
