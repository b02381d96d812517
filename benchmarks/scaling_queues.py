"""Scaling drill: Celery queues split over workers, and release storage throughput.

Starts its own redis-server and moto S3 server (ports in --ports), creates a fresh database on
the PostgreSQL server at --pg, seeds a project where a release build takes seconds and a quality
recompute about one, then measures with real Celery workers (concurrency 1, subprocesses):

0. Routing: with no worker running, each task class is sent and the Redis list it lands in is
   read (default, quality, exports), by task object and by name (as celery beat sends).
a) ONE worker on default,quality,exports: a release build is enqueued, then right after it a
   full quality recompute. How long the recompute takes from enqueue to done.
b) TWO workers, `-Q exports` and `-Q quality,default`: the same sequence. The recompute no
   longer waits behind the build. Prints both latencies and their ratio.
c) Limits on this machine: recompute duration, release build duration and MB/s into the local
   filesystem and into S3 (moto), raw storage write MB/s, and reading back a presigned URL.

Prints every figure and check; exits 1 if a check fails. Cleans up its processes, database and
files. About 2-3 minutes at the default size:

    .venv/bin/python benchmarks/scaling_queues.py
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

# Checks, polling and the seeded project are the celery-kill drill's (one FAILURES list).
from drill_celery_kill import FAILURES, check, wait_for  # noqa: E402
from drill_celery_kill import seed as drill_seed  # noqa: E402

FIGURES: list[str] = []
QUEUES = ("default", "quality", "exports")
S3_ACCESS = {"AWS_ACCESS_KEY_ID": "scaling", "AWS_SECRET_ACCESS_KEY": "scaling-secret"}
BUCKET = "assay-scaling"


def figure(text: str) -> None:
    """Print one measured figure and keep it for the summary."""
    print(f"  = {text}", flush=True)
    FIGURES.append(text)


def port_in(ports: range, taken: set[int]) -> int:
    """A TCP port of `ports` free on 127.0.0.1 right now and not in `taken`."""
    for port in ports:
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free port in {ports}")


def answers(url: str) -> bool:
    """True when an HTTP server answers at `url` (any status)."""
    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 - our own local server
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


class Worker:
    """A Celery worker subprocess on `queues`, concurrency 1, with its log file."""

    def __init__(self, env: dict[str, str], log: Path, name: str, queues: str) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "config.celery_app", "worker"),
                *("-Q", queues, "-c", "1", "-n", f"{name}@%h", "--loglevel", "INFO"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self, timeout: float = 60) -> bool:
        return wait_for(lambda: b"ready." in self.log.read_bytes(), timeout, 0.2)

    def ran(self, task: str) -> bool:
        return f"Task {task}[" in self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.handle.close()


def seed(items: int, words: int, annotators: int) -> tuple[Any, Any]:
    """The celery-kill drill's project (3 answers per item), with about `words` words per item."""
    from django.db import connection

    owner, project, _workers = drill_seed(items, 3, annotators)
    with connection.cursor() as cursor:  # text that does not compress away: md5 words
        cursor.execute(
            "UPDATE annotation_item SET data = jsonb_build_object('text', "
            "(SELECT string_agg(left(md5(id::text || '-' || g::text), 7), ' ') "
            " FROM generate_series(1, %s) g)) WHERE project_id = %s",
            [words, project.pk],
        )
    return owner, project


def computed_at(project_id: int) -> Any:
    from quality.models import ProjectScore

    return ProjectScore.objects.filter(project_id=project_id).values_list("computed_at").first()


def recompute_via(project: Any, timeout: float) -> float | None:
    """Enqueue a full recompute; seconds from enqueue until its ProjectScore is written."""
    from quality.tasks import quality_recompute_task

    before = computed_at(project.pk)
    started = time.monotonic()
    quality_recompute_task.apply_async(args=(project.pk,), kwargs={"full": True})
    if not wait_for(lambda: computed_at(project.pk) != before, timeout, 0.02):
        return None
    return time.monotonic() - started


def routing(redis_url: str) -> None:
    """Which Redis list each task's message lands in (no worker is consuming)."""
    import redis

    from annotation.tasks import import_run_task
    from config.celery_app import app
    from crowd.tasks import assignment_expire_stale_task
    from quality.model.tasks import model_train_task
    from quality.release_tasks import release_build_task
    from quality.releases.webhooks import release_webhook_task
    from quality.rules.tasks import rules_run_task
    from quality.tasks import quality_recompute_all_task, quality_recompute_task

    print("routing: one message per task, counted in each queue's Redis list", flush=True)
    client = redis.Redis.from_url(redis_url)
    expected = {  # task: (arguments, queue)
        release_build_task: ((0,), "exports"),
        quality_recompute_task: ((0,), "quality"),
        quality_recompute_all_task: ((), "quality"),
        model_train_task: ((0,), "quality"),
        rules_run_task: ((0,), "quality"),
        import_run_task: ((0,), "default"),
        assignment_expire_stale_task: ((), "default"),
        release_webhook_task: ((0,), "default"),
    }
    for task, (arguments, queue) in expected.items():
        for how in ("object", "name"):
            client.delete(*QUEUES)
            if how == "object":
                task.apply_async(args=arguments)
            else:  # as celery beat does for an entry whose task module it has not imported
                app.send_task(task.name, args=arguments)
            counts = {q: client.llen(q) for q in QUEUES}
            landed = [q for q, n in counts.items() if n]
            check(landed == [queue], f"{task.name} by {how} -> {landed} (want {queue})")
    client.delete(*QUEUES)


def phase(label: str, workers: list[Worker], owner: Any, project: Any, args: Any) -> float:
    """Build a release, enqueue a recompute right after; the recompute's latency."""
    from django.db import transaction

    from quality.models import Release
    from quality.releases.services import release_create

    for worker in workers:
        check(worker.ready(), f"{label}: worker {worker.log.stem} started")
    warm = recompute_via(project, args.timeout)  # imports numpy/scipy in the pool process
    check(warm is not None, f"{label}: warm-up recompute done in {warm or 0:.2f}s")
    with transaction.atomic():
        release = release_create(project=project, user=owner, include_raw=True)
    began = time.monotonic()
    check(
        wait_for(
            lambda: Release.objects.filter(pk=release.pk, status=Release.Status.BUILDING).exists(),
            args.timeout,
            0.02,
        ),
        f"{label}: release v{release.version} building",
    )
    latency = recompute_via(project, args.timeout * 4)
    check(latency is not None, f"{label}: recompute done")
    check(
        wait_for(
            lambda: Release.objects.filter(pk=release.pk, status=Release.Status.READY).exists(),
            args.timeout * 4,
            0.1,
        ),
        f"{label}: release v{release.version} ready",
    )
    build = time.monotonic() - began
    figure(f"{label}: recompute enqueue->done {latency or 0:.2f}s; build ~{build:.1f}s")
    return latency or float("nan")


def queue_phases(env: dict[str, str], tmp: Path, owner: Any, project: Any, args: Any) -> None:
    print("a) one worker -Q default,quality,exports -c 1", flush=True)
    one = Worker(env, tmp / "one.log", "one", "default,quality,exports")
    try:
        shared = phase("a) one worker", [one], owner, project, args)
    finally:
        one.stop()
    print("b) two workers: -Q exports, -Q quality,default (-c 1 each)", flush=True)
    exports = Worker(env, tmp / "exports.log", "exports", "exports")
    quality = Worker(env, tmp / "quality.log", "quality", "quality,default")
    try:
        split = phase("b) two workers", [exports, quality], owner, project, args)
        build = "quality.release_tasks.release_build_task"
        recompute = "quality.tasks.quality_recompute_task"
        check(
            exports.ran(build) and not exports.ran(recompute), "exports worker ran the build only"
        )
        check(
            quality.ran(recompute) and not quality.ran(build), "quality worker ran recomputes only"
        )
    finally:
        exports.stop()
        quality.stop()
    figure(f"recompute latency, one worker / split queues = {shared / split:.1f}x")


def release_timed(owner: Any, project: Any) -> tuple[Any, float, int]:
    """Build one release in this process: (release, seconds, bytes written)."""
    from django.db import transaction

    from quality import release_tasks
    from quality.releases import release_build
    from quality.releases.services import release_create

    with (
        mock.patch.object(release_tasks.release_build_task, "delay_on_commit"),
        transaction.atomic(),
    ):
        release = release_create(project=project, user=owner, include_raw=True)
    started = time.perf_counter()
    release = release_build(release=release)
    seconds = time.perf_counter() - started
    check(release.status == release.Status.READY, f"release v{release.version} ready")
    return release, seconds, sum(f.size for f in release.files.all())


def storage_write(files: dict[str, bytes], prefix: str) -> float:
    """Seconds to save `files` into the default storage under `prefix`."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    started = time.perf_counter()
    for name, content in files.items():
        default_storage.save(f"{prefix}/{name}", ContentFile(content))
    return time.perf_counter() - started


def limits(owner: Any, project: Any, s3: dict[str, Any], args: Any) -> None:
    from django.conf import settings
    from django.core.files.storage import default_storage
    from django.test import override_settings

    from quality.services import quality_recompute

    print("c) limits on this machine (in this process)", flush=True)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        quality_recompute(project=project, full=True)
        runs.append(time.perf_counter() - started)
    figure(
        f"recompute ({args.items} items x 3 answers): median {statistics.median(runs):.2f}s "
        f"(runs {', '.join(f'{r:.2f}' for r in runs)})"
    )
    release, seconds, size = release_timed(owner, project)
    mb = size / 1e6
    figure(f"release build to filesystem: {seconds:.1f}s for {mb:.1f} MB ({mb / seconds:.1f} MB/s)")
    files = {}
    for record in release.files.all():
        with default_storage.open(record.path, "rb") as handle:
            files[record.path.rsplit("/", 1)[1]] = handle.read()
    raw = sum(len(c) for c in files.values()) / 1e6
    fs = storage_write(files, "scaling/fs")
    figure(
        f"filesystem storage write (page cache): {raw:.1f} MB in {fs:.2f}s ({raw / fs:.0f} MB/s)"
    )
    with override_settings(
        STORAGES={**settings.STORAGES, "default": s3}, ASSAY_RELEASE_SIGNED_REDIRECT=True
    ):
        s3_release, s3_seconds, s3_size = release_timed(owner, project)
        figure(
            f"release build to S3 (moto): {s3_seconds:.1f}s for {s3_size / 1e6:.1f} MB "
            f"({s3_size / 1e6 / s3_seconds:.1f} MB/s)"
        )
        put = storage_write(files, "scaling/s3")
        figure(f"S3 (moto) storage write: {raw:.1f} MB in {put:.2f}s ({raw / put:.0f} MB/s)")
        record = s3_release.files.get(format="jsonl")
        url = default_storage.url(record.path, expire=60)
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - local moto
            content = response.read()
        got = time.perf_counter() - started
        check(hashlib.sha256(content).hexdigest() == record.sha256, "presigned GET = manifest")
        figure(
            f"presigned GET from S3 (moto): {len(content) / 1e6:.1f} MB in {got:.2f}s "
            f"({len(content) / 1e6 / got:.0f} MB/s)"
        )


def start_servers(args: Any, tmp: Path) -> tuple[list[subprocess.Popen], str, str]:
    taken: set[int] = set()
    redis_port, moto_port = port_in(args.ports, taken), port_in(args.ports, taken)
    redis_bin = shutil.which("redis-server") or "redis-server"
    redis = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=(tmp / "moto.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{moto_port}"
    check(wait_for(lambda: answers(endpoint), 30, 0.2), f"moto S3 server on :{moto_port}")
    return [redis, moto], f"redis://127.0.0.1:{redis_port}/0", endpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12_000)
    parser.add_argument("--words", type=int, default=60, help="words of text per item")
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="assay_scaleq_bench")
    parser.add_argument(
        "--ports", type=lambda s: range(*map(int, s.split("-"))), default="18250-18300"
    )
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    import boto3
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="scaling-queues-"))
    servers, redis_url, endpoint = start_servers(args, tmp)
    admin = psycopg.connect(f"{args.pg}/postgres", autocommit=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASSAY_", "AWS_"))},
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"{args.pg}/{args.database}",
        "REDIS_URL": redis_url,
        "ASSAY_MEDIA_ROOT": str(tmp / "media"),
        "ASSAY_STORAGE": "filesystem",
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    s3 = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": BUCKET,
            "endpoint_url": endpoint,
            "access_key": S3_ACCESS["AWS_ACCESS_KEY_ID"],
            "secret_key": S3_ACCESS["AWS_SECRET_ACCESS_KEY"],
            "region_name": "us-east-1",
            "signature_version": "s3v4",
            "querystring_auth": True,
            "file_overwrite": False,
            "default_acl": None,
        },
    }
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ACCESS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ACCESS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=BUCKET)
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.database}"')
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        owner, project = seed(args.items, args.words, args.annotators)
        print(
            f"seeded {args.items} items x 3 answers ({args.words} words each) in "
            f"{time.perf_counter() - started:.1f}s; {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.1f}; redis {redis_url}; S3 {endpoint}",
            flush=True,
        )
        routing(redis_url)
        queue_phases(env, tmp, owner, project, args)
        limits(owner, project, s3, args)
    finally:
        from django.db import connections

        connections.close_all()
        for server in servers:
            server.terminate()
            server.wait(10)
        with contextlib.suppress(Exception):
            admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    figure(f"load average at the end (other processes compete for the CPUs): {os.getloadavg()}")
    print("figures:\n" + "\n".join(f"  {f}" for f in FIGURES), flush=True)
    print("FAILED: " + "; ".join(FAILURES) if FAILURES else "all checks passed", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
