"""Fault drill: a Celery worker SIGKILLed in the middle of a quality recompute and a release build.

Starts its own redis-server on a free port and a fresh database on the PostgreSQL server at
--pg (default the local one), seeds a project big enough for both tasks to take a while, and
runs real Celery workers (`-Q default,quality,exports`, concurrency 1) as subprocesses:

1. Recompute: after a first full recompute, more annotations arrive and a full recompute is
   queued. When the worker holds the recompute's advisory lock (the task has started), the
   pool process running it is SIGKILLed. Checks: ItemScore and ProjectScore rows are exactly
   the previous ones (the recompute is one transaction); the task is redelivered
   (acks_late + reject_on_worker_lost) and completes, scoring every annotation.
2. Release build: while the release is building (status building, progress > 0) the whole
   worker (main process and pool) is SIGKILLed. Checks: the release is not ready, has no
   ReleaseFile rows, its storage directory holds no files, downloads are refused; a new worker
   gets the unacknowledged message back (after the broker's visibility timeout, set short here
   with --visibility, and kombu's restore scan, made every second here) and builds the release
   to ready, with files matching the manifest.

Prints each check; exits 1 on any violation. Cleans up its processes, database and files.

    .venv/bin/python benchmarks/drill_celery_kill.py --items 60000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAILURES: list[str] = []


def check(ok: bool, what: str) -> bool:
    """Print one check's outcome and remember failures."""
    print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def children(pid: int) -> list[int]:
    """Direct child process ids of `pid` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


class Worker:
    """A Celery worker subprocess with its log file."""

    def __init__(self, env: dict[str, str], log: Path, name: str, visibility: int) -> None:
        code = (
            "from config.celery_app import app;"
            "app.conf.broker_transport_options = {"
            f"'visibility_timeout': {visibility}, 'unacked_restore_interval': 1,"
            " 'unacked_restore_throttle': 1};"
            "app.worker_main(['worker', '-Q', 'default,quality,exports', '-c', '1',"
            f" '-n', '{name}@%h', '--loglevel', 'INFO', '--without-gossip',"
            " '--without-mingle', '--without-heartbeat'])"
        )
        self.log = log
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self, timeout: float = 60) -> bool:
        return wait_for(lambda: b"ready." in self.log.read_bytes(), timeout, 0.2)

    def kill_pool(self) -> list[int]:
        pids = children(self.proc.pid)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.handle.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill_all()
        self.handle.close()


def seed(items: int, overlap: int, annotators: int) -> tuple[Any, Any, list[Any]]:
    """A single-label project with `items` items, `overlap` answers each."""
    import numpy as np
    from django.contrib.auth import get_user_model

    from annotation.models import Annotation, Item
    from annotation.services import project_create

    users = get_user_model()
    rng = np.random.default_rng(8)
    owner = users.objects.create_user("drill-owner")  # no password: hashing costs seconds
    labels = ["pos", "neg", "neu"]
    project = project_create(
        user=owner,
        name="Drill",
        labels=[{"value": v, "hotkey": str(i + 1)} for i, v in enumerate(labels)],
        overlap=overlap,
        gold_ratio=0.0,
    )
    workers = [users.objects.create_user(f"drill-{n}") for n in range(annotators)]
    Item.objects.bulk_create(
        [
            Item(
                project=project,
                data={"text": f"drill item {n}"},
                content_hash=f"{n:064x}",
                target=overlap,
                slots_taken=overlap,
                annotation_count=overlap,
            )
            for n in range(items)
        ],
        batch_size=5000,
    )
    item_ids = list(project.items.order_by("id").values_list("id", flat=True))
    truth = rng.integers(0, len(labels), len(item_ids))
    rows = []
    for position, item_id in enumerate(item_ids):
        for w in rng.choice(len(workers), size=overlap, replace=False):
            label = truth[position] if rng.random() < 0.8 else rng.integers(0, len(labels))
            rows.append(
                Annotation(
                    project=project,
                    item_id=item_id,
                    author=workers[w],
                    value={"label": labels[label]},
                    duration_ms=1000,
                )
            )
    Annotation.objects.bulk_create(rows, batch_size=5000)
    return owner, project, workers


def scores_fingerprint(project_id: int) -> tuple[Any, ...]:
    """Counts and digests of the project's ItemScore and ProjectScore rows."""
    from django.db import connection

    from quality.models import ItemScore, ProjectScore

    out: list[Any] = []
    with connection.cursor() as cursor:
        for model in (ItemScore, ProjectScore):
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) "  # noqa: S608
                f"FROM {model._meta.db_table} t WHERE project_id = %s",
                [project_id],
            )
            out.extend(cursor.fetchone())
    return tuple(out)


def advisory_lock_held(database: str) -> bool:
    """True while some session of `database` holds an advisory lock (a recompute runs)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = %s",
            [database],
        )
        return cursor.fetchone()[0] > 0


def drill_recompute(env: dict[str, str], tmp: Path, project: Any, args: Any) -> None:
    from django.db import close_old_connections

    from annotation.models import Annotation
    from quality.models import ProjectScore
    from quality.services import quality_recompute
    from quality.tasks import quality_recompute_task

    print("recompute: first full run (in the drill process)", flush=True)
    started = time.perf_counter()
    quality_recompute(project=project, full=True)
    print(f"  took {time.perf_counter() - started:.1f}s", flush=True)
    # New answers from an extra annotator on a tenth of the items: the next run changes rows.
    from django.contrib.auth import get_user_model

    late = get_user_model().objects.create_user("drill-late", password="x")
    ids = list(project.items.order_by("id").values_list("id", flat=True)[::10])
    Annotation.objects.bulk_create(
        [
            Annotation(
                project=project, item_id=i, author=late, value={"label": "neg"}, duration_ms=900
            )
            for i in ids
        ],
        batch_size=5000,
    )
    total = Annotation.objects.filter(project=project).count()
    before = scores_fingerprint(project.pk)
    worker = Worker(env, tmp / "worker-recompute.log", "drill-recompute", args.visibility)
    try:
        check(worker.ready(), "worker started")
        quality_recompute_task.apply_async(args=(project.pk,), kwargs={"full": True})
        began = wait_for(lambda: advisory_lock_held(args.database), args.timeout)
        check(began, "recompute started (advisory lock held by the worker)")
        time.sleep(args.kill_after)
        still = advisory_lock_held(args.database)
        killed = worker.kill_pool()
        check(bool(killed) and still, f"pool process {killed} SIGKILLed mid-recompute")
        close_old_connections()
        wait_for(lambda: not advisory_lock_held(args.database), 10)
        check(scores_fingerprint(project.pk) == before, "previous ItemScore/ProjectScore intact")
        redone = wait_for(
            lambda: ProjectScore.objects.filter(project=project, annotations_scored=total).exists(),
            args.timeout,
            0.3,
        )
        check(redone, f"task redelivered and completed: {total} annotations scored")
        log = worker.log.read_text(errors="replace")
        check("WorkerLostError" in log or "exited with 'signal 9" in log, "worker saw the loss")
        after = scores_fingerprint(project.pk)
        quality_recompute(project=project, full=True)  # a clean run must agree
        same = scores_fingerprint(project.pk)
        check(after[0] == same[0] and after[1] == same[1], "redelivered result equals a clean run")
    finally:
        worker.stop()


def drill_release(env: dict[str, str], tmp: Path, owner: Any, project: Any, args: Any) -> None:
    from django.core.files.storage import default_storage
    from django.db import transaction

    from quality.models import Release, ReleaseFile
    from quality.releases.services import release_create, release_file_open
    from quality.releases.storage_publish import release_storage_dir

    print("release: build killed mid-way, then redelivered to a new worker", flush=True)
    worker = Worker(env, tmp / "worker-release-1.log", "drill-release-1", args.visibility)
    check(worker.ready(), "worker started")
    with transaction.atomic():
        release = release_create(project=project, user=owner, include_raw=True)
    began = wait_for(
        lambda: Release.objects.filter(
            pk=release.pk, status=Release.Status.BUILDING, progress__gt=0
        ).exists(),
        args.timeout,
    )
    check(began, "build started (status building, progress > 0)")
    worker.kill_all()
    release.refresh_from_db()
    check(
        release.status != Release.Status.READY, f"release not ready after kill ({release.status})"
    )
    check(not ReleaseFile.objects.filter(release=release).exists(), "no ReleaseFile rows")
    folder = Path(default_storage.path(release_storage_dir(release=release)))
    visible = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    check(not visible, f"storage dir {folder} holds no files")
    try:
        release_file_open(release=release, fmt="jsonl")
        refused = False
    except Exception as exc:  # the domain's ConflictError (409 not ready)
        refused = "not ready" in str(exc)
    check(refused, "download refused")
    worker = Worker(env, tmp / "worker-release-2.log", "drill-release-2", args.visibility)
    try:
        check(worker.ready(), "new worker started")
        started = time.monotonic()
        ready = wait_for(
            lambda: Release.objects.filter(pk=release.pk, status=Release.Status.READY).exists(),
            args.visibility + args.timeout,
            0.3,
        )
        check(ready, f"redelivered build ready after {time.monotonic() - started:.1f}s")
        release.refresh_from_db()
        listed = {f["format"]: f for f in (release.manifest or {}).get("files", [])}
        records = {r.format: r for r in ReleaseFile.objects.filter(release=release)}
        data = {fmt: r for fmt, r in records.items() if fmt != "manifest"}
        check(bool(data) and set(data) == set(listed), f"{len(records)} files recorded")
        for fmt, record in records.items():
            with default_storage.open(record.path, "rb") as handle:
                content = handle.read()
            expected = (
                json.loads(content) == release.manifest
                if fmt == "manifest"
                else record.sha256 == listed.get(fmt, {}).get("sha256")
            )
            check(
                expected and hashlib.sha256(content).hexdigest() == record.sha256,
                f"{record.path} matches the manifest",
            )
        release_file_open(release=release, fmt="jsonl")
        check(True, "download served")
    finally:
        worker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="assay_drill_celery")
    parser.add_argument("--kill-after", type=float, default=0.5, help="seconds after start")
    parser.add_argument("--visibility", type=int, default=5, help="broker visibility timeout")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if not redis_bin:
        print("redis-server not found", file=sys.stderr)
        return 2
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="drill-celery-"))
    port = free_port()
    redis = subprocess.Popen(
        [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    admin = psycopg.connect(f"{args.pg}/postgres", autocommit=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"{args.pg}/{args.database}",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "ASSAY_MEDIA_ROOT": str(tmp / "media"),
        "ASSAY_STORAGE": "filesystem",
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.database}"')
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        owner, project, _ = seed(args.items, args.overlap, args.annotators)
        print(
            f"seeded {args.items} items x {args.overlap} answers in "
            f"{time.perf_counter() - started:.1f}s; redis on :{port}",
            flush=True,
        )
        drill_recompute(env, tmp, project, args)
        drill_release(env, tmp, owner, project, args)
    finally:
        from django.db import connections

        connections.close_all()
        redis.terminate()
        redis.wait(10)
        with contextlib.suppress(Exception):
            admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("FAILED: " + "; ".join(FAILURES) if FAILURES else "all checks passed", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
