"""The demo command the README's first line runs: idempotent, real sample, two task types."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from annotation.models import Project

# Committed transactions: the import runs (eagerly) when the command's project is committed.
pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_creates_a_tone_and_a_spans_project_once(celery_eager):
    out, err = io.StringIO(), io.StringIO()
    call_command("demo", stdout=out, stderr=err)
    call_command("demo", stdout=io.StringIO(), stderr=err)  # a second run changes nothing

    assert err.getvalue() == ""
    tone = Project.objects.get(task_type="single_label")
    spans = Project.objects.get(task_type="spans")
    assert tone.items.count() == 50
    assert spans.items.count() == 50
    assert tone.items.filter(is_gold=True).exists()
    assert not spans.items.filter(is_gold=True).exists()  # tone answers are no span answers
    assert [label["value"] for label in spans.labels] == ["PERSON", "PLACE"]
    assert "Demo project ready: People and places" in out.getvalue()
