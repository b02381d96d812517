"""Create the demo project: an owner, two workers and real public-domain sentences."""

from __future__ import annotations

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
USERS = [("owner", "owner-demo-pass"), ("alice", "alice-demo-pass"), ("bob", "bob-demo-pass")]


class Command(BaseCommand):
    help = "Create the demo project with an owner and two workers (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        users = {}
        for username, password in USERS:
            user, created = get_user_model().objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
            users[username] = user
        project = Project.objects.filter(name=PROJECT_NAME).first()
        if project is None:
            with transaction.atomic():
                project = project_create(
                    user=users["owner"],
                    name=PROJECT_NAME,
                    instructions=INSTRUCTIONS,
                    task_type="single_label",
                    labels=LABELS,
                    overlap=2,
                    gold_ratio=0.1,
                )
                for worker in ("alice", "bob"):
                    project_member_add(project=project, username=worker, role="annotator")
                upload = SimpleUploadedFile(SAMPLE.name, SAMPLE.read_bytes())
                job = import_job_create(project=project, user=users["owner"], uploaded_file=upload)
            job.refresh_from_db()
            if job.status != ImportJob.Status.SUCCEEDED:
                self.stderr.write(f"Import of the demo sample failed: {job.errors}")
        self.stdout.write(self.style.SUCCESS(f"Demo project ready: {project.name}"))
        self.stdout.write("Log in at http://127.0.0.1:8000/ as:")
        for username, password in USERS:
            role = "project owner" if username == "owner" else "worker"
            self.stdout.write(f"  {username:6} / {password:16} ({role})")
