"""Backups: scripts/backup and scripts/restore round-trip a real database and its storage, and
manage.py backup_verify counts the main tables and checks release files against their sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from psycopg import sql

from core.management.commands.backup_verify import backup_report
from quality.releases import release_build
from tests.annotation.factories import AnnotationFactory, ItemFactory
from tests.quality.factories import make_release

ROOT = Path(__file__).resolve().parents[2]
PG_TOOLS = ("pg_dump", "pg_restore", "psql")
STEP_TIMEOUT = 120  # seconds per subprocess: the whole round trip takes ~20 s here


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: this test must run in CI.", pytrace=False)
    pytest.skip(reason)


# --- backup_verify in-process ------------------------------------------------------------------


@pytest.fixture
def released(db, media_root, project, owner):
    """`project` with three labelled items and one ready release."""
    for item in ItemFactory.create_batch(3, project=project):
        AnnotationFactory(item=item, value={"label": "positive"})
    release = release_build(release=make_release(project, owner))
    assert release.status == "ready"
    return release


def test_backup_report_counts_tables_and_checks_release_files(released):
    report = backup_report()

    assert report["counts"]["projects"] == 1
    assert report["counts"]["items"] == 3
    assert report["counts"]["annotations"] == 3
    assert report["counts"]["releases"] == 1
    assert report["counts"]["release_files"] == released.files.count() > 0
    assert {f["path"] for f in report["release_files"]} == {f.path for f in released.files.all()}
    assert all(f["status"] == "ok" for f in report["release_files"])
    assert report["problems"] == []


def test_backup_verify_fails_on_a_changed_or_missing_release_file(released, capsys):
    changed, missing = released.files.all()[:2]
    default_storage.delete(changed.path)
    default_storage.save(changed.path, ContentFile(b"tampered"))
    default_storage.delete(missing.path)

    with pytest.raises(CommandError, match="2 problem"):
        call_command("backup_verify")

    err = capsys.readouterr().err
    assert f"{changed.format} file {changed.path} is mismatch" in err
    assert f"{missing.format} file {missing.path} is missing" in err


def test_backup_verify_expect_reports_each_differing_count(released, tmp_path, capsys):
    expected = {**backup_report()["counts"], "annotations": 99}
    (tmp_path / "counts.json").write_text(json.dumps({"counts": expected}))

    with pytest.raises(CommandError, match="1 problem"):
        call_command("backup_verify", "--json", expect=tmp_path / "counts.json")

    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == ["annotations: expected 99, found 3"]


def test_backup_verify_expect_rejects_a_file_that_is_not_a_report(db, tmp_path):
    (tmp_path / "counts.json").write_text('{"other": 1}')

    with pytest.raises(CommandError, match="not a backup_verify report"):
        call_command("backup_verify", expect=tmp_path / "counts.json")


# --- the scripts, end to end on scratch databases ---------------------------------------------


def _url(dbname: str) -> str:
    db = settings.DATABASES["default"]
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    return f"postgresql://{auth}@{host}:{db.get('PORT') or 5432}/{dbname}"


@pytest.fixture
def scratch_databases():
    """Two fresh, empty databases (source and target) on the test server, dropped after."""
    if missing := [tool for tool in PG_TOOLS if shutil.which(tool) is None]:
        _missing(f"{', '.join(missing)} not installed (apt-get install postgresql-client)")
    names = [f"assay_backup_{uuid.uuid4().hex[:10]}_{role}" for role in ("src", "dst")]
    with psycopg.connect(_url("postgres"), autocommit=True, connect_timeout=5) as admin:
        for name in names:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield [_url(name) for name in names]
    finally:
        with psycopg.connect(_url("postgres"), autocommit=True, connect_timeout=5) as admin:
            for name in names:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _run(args: list[str], *, database_url: str, media: Path, check: bool = True):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "ASSAY_STORAGE", "DJANGO_READ_DOT_ENV_FILE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=database_url,
        ASSAY_MEDIA_ROOT=str(media),
        PYTHON=sys.executable,
    )
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    if check and result.returncode != 0:
        pytest.fail(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.postgres
def test_backup_and_restore_bring_back_a_project_with_annotations_and_releases(
    scratch_databases, tmp_path
):
    source, target = scratch_databases
    source_media, target_media = tmp_path / "source-media", tmp_path / "target-media"
    manage = [sys.executable, "manage.py"]
    _run([*manage, "migrate", "--noinput", "-v0"], database_url=source, media=source_media)
    seeded = json.loads(
        _run(
            [sys.executable, "tests/core/backup_seed.py"], database_url=source, media=source_media
        ).stdout
    )
    before = json.loads(
        _run([*manage, "backup_verify", "--json"], database_url=source, media=source_media).stdout
    )

    backup = _run(
        ["scripts/backup", "--out", str(tmp_path / "backups")],
        database_url=source,
        media=source_media,
    )
    backup_dir = Path(backup.stdout.strip().splitlines()[-1])
    restored = _run(["scripts/restore", str(backup_dir)], database_url=target, media=target_media)
    after = json.loads(
        _run([*manage, "backup_verify", "--json"], database_url=target, media=target_media).stdout
    )

    assert "backup_verify: OK" in restored.stdout
    assert before["counts"] == after["counts"]
    assert before["counts"]["annotations"] == 15
    assert before["counts"]["releases"] == 2
    assert sorted(f["path"] for f in after["release_files"]) == seeded["release_files"]
    assert [(f["path"], f["sha256"], f["status"]) for f in after["release_files"]] == [
        (f["path"], f["sha256"], "ok") for f in before["release_files"]
    ]
    for path in [*seeded["release_files"], seeded["upload"]]:
        assert _sha256(target_media / path) == _sha256(source_media / path)
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["database"]["sha256"] == _sha256(backup_dir / "db.dump")
    assert manifest["counts"] == before["counts"]
    assert "[X]  annotation.0001_initial" in (backup_dir / "migrations.txt").read_text()

    # A damaged backup is refused before anything is touched.
    damaged = tmp_path / "damaged"
    shutil.copytree(backup_dir, damaged)
    dump = bytearray((damaged / "db.dump").read_bytes())
    dump[100] ^= 0xFF
    (damaged / "db.dump").write_bytes(bytes(dump))
    refused = _run(
        ["scripts/restore", "--force", str(damaged)],
        database_url=target,
        media=target_media,
        check=False,
    )
    assert refused.returncode != 0
    assert "is damaged" in refused.stderr

    # A second restore into the now non-empty target is refused without --force.
    refused = _run(
        ["scripts/restore", str(backup_dir)], database_url=target, media=target_media, check=False
    )
    assert refused.returncode != 0
    assert "the target is not empty" in refused.stderr

    # With --force it restores over it; a damaged release file is then caught by the check.
    (target_media / seeded["release_files"][0]).write_bytes(b"bit rot")
    forced = _run(
        ["scripts/restore", "--force", str(backup_dir)], database_url=target, media=target_media
    )
    assert "backup_verify: OK" in forced.stdout
    (target_media / seeded["release_files"][0]).write_bytes(b"bit rot")
    broken = _run([*manage, "backup_verify"], database_url=target, media=target_media, check=False)
    assert broken.returncode == 1
    assert f"{seeded['release_files'][0]} is mismatch" in broken.stderr
