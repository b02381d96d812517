"""Create the demo projects: an owner, two workers and real public-domain sentences, labelled
for tone (single label) and for people and places (entity spans)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation.imports import import_job_create
from annotation.models import ImportJob, Project
from annotation.services import project_create
from crowd.services import project_member_add

SAMPLE = Path(__file__).resolve().parents[2] / "demo" / "public_domain_sentences.jsonl"
PROJECT_NAME = "Tone of famous first lines"
INSTRUCTIONS = """\
Read the passage and pick the **tone** it sets:

- **Positive**: warm, hopeful, admiring or joyful.
- **Negative**: gloomy, fearful, angry, bored or sad.
- **Neutral**: a plain statement of fact, or no clear tone.

Judge the passage itself, not the book you may know. Keys: `1` `2` `3` pick, `Enter` submits,
`S` skips.
"""
LABELS = [
    {"value": "positive", "hotkey": "1"},
    {"value": "negative", "hotkey": "2"},
    {"value": "neutral", "hotkey": "3"},
]
SPANS_NAME = "People and places in famous first lines"
SPANS_INSTRUCTIONS = """\
Mark every **person** (a named character or real person) and every **place** (a named town,
country, street or building) in the passage.

Select the words with the mouse, or move with the arrow keys and extend with `Shift`+arrows,
then press `p` (person) or `l` (place). Click a marked span to remove it. `Enter` submits,
also when there is nothing to mark.
"""
SPANS_LABELS = [
    {"value": "PERSON", "hotkey": "p", "colour": "#0072b2"},
    {"value": "PLACE", "hotkey": "l", "colour": "#d55e00"},
]
USERS = [("owner", "owner-demo-pass"), ("alice", "alice-demo-pass"), ("bob", "bob-demo-pass")]


def _without_gold(jsonl: bytes) -> bytes:
    """The sample without its tone gold answers (they are no answers to a spans question)."""
    rows = (json.loads(line) for line in jsonl.splitlines() if line.strip())
    return b"".join(
        json.dumps({k: v for k, v in row.items() if k != "gold"}).encode() + b"\n" for row in rows
    )


class Command(BaseCommand):
    help = "Create the demo projects with an owner and two workers (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        users = {}
        for username, password in USERS:
            user, created = get_user_model().objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
            users[username] = user
        projects = [
            self._project(
                users,
                name=PROJECT_NAME,
                instructions=INSTRUCTIONS,
                task_type="single_label",
                labels=LABELS,
                overlap=2,
                gold_ratio=0.1,
            ),
            self._project(
                users,
                name=SPANS_NAME,
                instructions=SPANS_INSTRUCTIONS,
                task_type="spans",
                labels=SPANS_LABELS,
                overlap=2,
                gold_ratio=0.0,
                sample=_without_gold(SAMPLE.read_bytes()),
            ),
        ]
        for project in projects:
            self.stdout.write(self.style.SUCCESS(f"Demo project ready: {project.name}"))
        self.stdout.write("Log in at http://127.0.0.1:8000/ as:")
        for username, password in USERS:
            role = "project owner" if username == "owner" else "worker"
            self.stdout.write(f"  {username:6} / {password:16} ({role})")

    def _project(
        self, users: dict[str, Any], *, name: str, sample: bytes | None = None, **fields: Any
    ) -> Project:
        """The demo project called `name`, created with the sample sentences when missing."""
        project = Project.objects.filter(name=name).first()
        if project is not None:
            return project
        with transaction.atomic():
            project = project_create(user=users["owner"], name=name, **fields)
            for worker in ("alice", "bob"):
                project_member_add(project=project, username=worker, role="annotator")
            upload = SimpleUploadedFile(SAMPLE.name, sample or SAMPLE.read_bytes())
            job = import_job_create(project=project, user=users["owner"], uploaded_file=upload)
        job.refresh_from_db()
        if job.status != ImportJob.Status.SUCCEEDED:
            self.stderr.write(f"Import of the demo sample into {name!r} failed: {job.errors}")
        return project
