"""Check a database and its storage after a restore (or before a backup): row counts of the
main tables and every ready release's files present in storage with their recorded sha256.

Exit status 0 when every file checks out (and the counts equal `--expect`'s, when given), 1
otherwise. `--json` prints the report as JSON (what scripts/backup stores as counts.json).
`--snapshot` reads inside an exported PostgreSQL snapshot (pg_export_snapshot), so the report
describes exactly what a pg_dump taken with the same `--snapshot` contains.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

# Report key -> model label. Looked up by label: core is the shared kernel and imports no app.
COUNTED_MODELS = {
    "projects": "annotation.Project",
    "items": "annotation.Item",
    "annotations": "annotation.Annotation",
    "releases": "quality.Release",
    "release_files": "quality.ReleaseFile",
}
READ_CHUNK = 1024 * 1024


def backup_counts() -> dict[str, int]:
    """Row counts of the tables a restore must bring back, by report key."""
    counts = {key: apps.get_model(label).objects.count() for key, label in COUNTED_MODELS.items()}
    counts["users"] = get_user_model().objects.count()
    return counts


def _file_sha256(path: str) -> str | None:
    """The sha256 of a file in the default storage; None when it is missing."""
    if not default_storage.exists(path):
        return None
    digest = hashlib.sha256()
    with default_storage.open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def release_file_checks() -> list[dict[str, Any]]:
    """One entry per file of every ready release: where, expected and found sha256, status."""
    release_file = apps.get_model(COUNTED_MODELS["release_files"])
    rows = release_file.objects.filter(release__status="ready").order_by("release_id", "format")
    checks = []
    for row in rows.select_related("release"):
        found = _file_sha256(row.path)
        status = "missing" if found is None else ("ok" if found == row.sha256 else "mismatch")
        checks.append(
            {
                "project_id": row.release.project_id,
                "release": row.release.tag,
                "format": row.format,
                "path": row.path,
                "sha256": row.sha256,
                "found_sha256": found,
                "status": status,
            }
        )
    return checks


def backup_report(*, snapshot: str = "") -> dict[str, Any]:
    """Counts and release file checks, read in one transaction (in `snapshot` when given)."""
    with transaction.atomic():
        if snapshot:
            if connection.vendor != "postgresql":
                raise CommandError("--snapshot needs PostgreSQL.")
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        counts = backup_counts()
        files = release_file_checks()
    problems = [
        f"release {f['release']} of project {f['project_id']}: {f['format']} file {f['path']} "
        f"is {f['status']}"
        for f in files
        if f["status"] != "ok"
    ]
    return {"counts": counts, "release_files": files, "problems": problems}


def counts_compare(*, expected: dict[str, int], found: dict[str, int]) -> list[str]:
    """A problem line per count that differs between `expected` and `found`."""
    return [
        f"{key}: expected {expected[key]}, found {found.get(key)}"
        for key in sorted(expected)
        if found.get(key) != expected[key]
    ]


def _expected_counts(path: Path) -> dict[str, int]:
    """The `counts` of a report written by `backup_verify --json` (or a backup manifest)."""
    try:
        counts = json.loads(path.read_text())["counts"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CommandError(f"--expect {path}: not a backup_verify report ({error}).") from error
    if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
        raise CommandError(f"--expect {path}: `counts` must map table names to integers.")
    return counts


class Command(BaseCommand):
    help = (
        "Verify a database and its storage: counts of projects, items, annotations and "
        "releases, and every ready release's files present with matching sha256."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--expect", type=Path, help="A report (counts.json) whose counts must match."
        )
        parser.add_argument(
            "--snapshot", default="", help="Read in this exported PostgreSQL snapshot."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = backup_report(snapshot=options["snapshot"])
        if options["expect"] is not None:
            expected = _expected_counts(options["expect"])
            report["expected_counts"] = expected
            report["problems"] += counts_compare(expected=expected, found=report["counts"])
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        else:
            self._write_text(report)
        if report["problems"]:
            raise CommandError(f"backup_verify found {len(report['problems'])} problem(s).")

    def _write_text(self, report: dict[str, Any]) -> None:
        for key, count in report["counts"].items():
            self.stdout.write(f"{key:14} {count}")
        ok = sum(1 for f in report["release_files"] if f["status"] == "ok")
        self.stdout.write(f"release files  {ok}/{len(report['release_files'])} ok")
        for problem in report["problems"]:
            self.stderr.write(f"PROBLEM: {problem}")
        if not report["problems"]:
            self.stdout.write(self.style.SUCCESS("backup_verify: OK"))
