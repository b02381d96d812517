"""Redis outage drill: submissions never depend on Redis; quality scores catch up after it.

Starts its own processes and stops them: a PRIVATE redis-server (free port, temporary
directory, no persistence), gunicorn with production settings and a Celery worker, both pointed
at that Redis (REDIS_URL), on a fresh PostgreSQL database (assay_drill_redis_<pid>). Then:

1. annotators submit through gunicorn; Redis is SIGKILLed after --before seconds and stays
   down for --outage seconds while they keep submitting (they stop when it ends, so the last
   submissions are the ones whose recompute could not be queued: the hard case);
2. checks: zero 5xx, zero error responses, zero transport errors, annotations in the database
   == accepted responses, no duplicates, no item over its target;
3. restarts Redis on the same port and checks that ProjectScore.annotations_scored reaches
   the database count within --catch-up seconds with no further submission (the web processes
   re-queue the recomputes they could not queue); then sends the periodic task as Celery beat
   would (quality.tasks.quality_recompute_all_task) and checks the scores still agree.
   A Celery worker that died of the outage is restarted, as the deployment's restart policy
   (docker-compose `restart: unless-stopped`) does, and reported.

Prints what it checked, exits 1 on any violation, and drops its database.

    .venv/bin/python benchmarks/drill_redis.py --annotators 16 --before 5 --outage 10
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drill_load  # noqa: E402
import load  # noqa: E402

ROOT = load.ROOT
PG = load.PG


def redis_start(port: int, directory: str) -> subprocess.Popen:
    """A private redis-server on 127.0.0.1:<port>, no persistence; waits until it answers."""
    import redis

    binary = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", directory, "--logfile", str(Path(directory) / "redis.log")],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


def service_env(database: str, redis_url: str) -> dict[str, str]:
    """Production-like settings for the web and worker processes."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": f"{PG}/{database}",
        "REDIS_URL": redis_url,
        "DJANGO_SECRET_KEY": "drill-" + "k" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_LOG_LEVEL": "CRITICAL",
    }


def gunicorn_start(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{port}"]
    cmd += ["-w", str(workers), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/schema/")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def celery_worker_start(env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv/bin/celery"), "-A", "config.celery_app", "worker"]
    cmd += ["-Q", "default,quality,exports", "-c", "1", "-l", "info", "--without-gossip"]
    cmd += ["--without-mingle", "--without-heartbeat", "-n", f"drill-{os.getpid()}@%h"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def beat_tick(env: dict[str, str]) -> None:
    """Send the periodic full-recompute task, as Celery beat does on its schedule."""
    cmd = [str(ROOT / ".venv/bin/celery"), "-A", "config.celery_app", "call"]
    cmd += ["quality.tasks.quality_recompute_all_task", "--queue", "quality"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=60, capture_output=True)


def scored(database: str, project_id: int) -> tuple[int, int]:
    """(annotations in the database, ProjectScore.annotations_scored or -1)."""
    import psycopg

    with psycopg.connect(f"{PG}/{database}") as conn:
        stored = conn.execute(
            "SELECT count(*) FROM annotation_annotation WHERE project_id = %s", [project_id]
        ).fetchone()[0]
        row = conn.execute(
            "SELECT annotations_scored FROM quality_projectscore WHERE project_id = %s",
            [project_id],
        ).fetchone()
    return stored, (row[0] if row else -1)


def wait_scored(
    database: str, project_id: int, seconds: float, tick=lambda: None
) -> tuple[bool, float, tuple]:
    """Poll until annotations_scored equals the database count; (caught up, waited, counts).

    `tick` runs at every poll (the drill's process supervisor)."""
    started = time.monotonic()
    counts = scored(database, project_id)
    while counts[0] != counts[1] and time.monotonic() - started < seconds:
        tick()
        time.sleep(0.5)
        counts = scored(database, project_id)
    return counts[0] == counts[1], round(time.monotonic() - started, 1), counts


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--before", type=float, default=5, help="seconds of work before the kill")
    parser.add_argument("--outage", type=float, default=10, help="seconds Redis stays down")
    parser.add_argument("--catch-up", type=float, default=60, help="bound on the catch-up")
    args = parser.parse_args()
    database = f"assay_drill_redis_{os.getpid()}"
    workdir = tempfile.mkdtemp(prefix="assay-drill-redis-")
    port = load.free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    redis_proc = web = worker = None
    found: list[str] = []
    report: dict = {"database": database, "redis": redis_url}
    print(f"drill_redis: {database}, private Redis {redis_url} in {workdir}", flush=True)
    try:
        setup = load.prepare(database, args.items, args.annotators, 3)
        project_id = setup["project"]
        redis_proc = redis_start(port, workdir)
        env = service_env(database, redis_url)
        web_port = load.free_port()
        web = gunicorn_start(env, web_port, args.workers)
        worker = celery_worker_start(env, Path(workdir) / "worker.log")
        print(
            f"redis pid {redis_proc.pid}, gunicorn pid {web.pid} (:{web_port}), "
            f"celery worker pid {worker.pid}",
            flush=True,
        )

        outcome: dict = {}
        seconds = args.before + args.outage
        runner = threading.Thread(
            target=lambda: outcome.update(
                drill_load.run_annotators(web_port, setup, "separate", args.annotators, seconds)
            )
        )
        runner.start()
        time.sleep(args.before)
        stored, scored_before = scored(database, project_id)
        report["before_outage"] = {"stored": stored, "scored": scored_before}
        redis_proc.send_signal(signal.SIGKILL)
        redis_proc.wait(timeout=10)
        killed_at = time.monotonic()
        print(f"redis SIGKILLed after {args.before} s; annotators keep submitting", flush=True)
        runner.join(timeout=seconds + 120)
        report["run"] = outcome
        report["outage_s"] = round(time.monotonic() - killed_at, 1)
        checks = load.check_database(database)
        report["checks"] = checks
        found += drill_load.violations(outcome, checks)

        redis_proc = redis_start(port, workdir)
        print(f"redis restarted on port {port} (pid {redis_proc.pid})", flush=True)
        worker_log = Path(workdir) / "worker.log"
        report["celery_worker_restarts"] = []

        def supervise() -> None:
            """Restart a dead Celery worker, as the deployment's restart policy does."""
            nonlocal worker
            if worker.poll() is None:
                return
            text = worker_log.read_text()
            crash = [line for line in text.splitlines() if "Unrecoverable error" in line]
            report["celery_worker_restarts"].append(
                {"exit_code": worker.returncode, "reason": (crash or ["?"])[-1][-300:]}
            )
            print("celery worker died during the outage; restarting it", flush=True)
            worker_log.rename(worker_log.with_suffix(f".{len(report['celery_worker_restarts'])}"))
            worker = celery_worker_start(env, worker_log)

        supervise()
        ok, waited, counts = wait_scored(database, project_id, args.catch_up, supervise)
        report["caught_up_after_redis_returned"] = {
            "ok": ok,
            "waited_s": waited,
            "stored": counts[0],
            "scored": counts[1],
        }
        if not ok:
            found.append(
                f"annotations_scored {counts[1]} != stored {counts[0]} "
                f"{args.catch_up} s after Redis returned (nothing re-queued the recompute)"
            )
        beat_tick(env)
        time.sleep(3)
        ok, waited, counts = wait_scored(database, project_id, args.catch_up, supervise)
        report["after_beat_tick"] = {"ok": ok, "stored": counts[0], "scored": counts[1]}
        if not ok:
            found.append(f"after the beat task: scored {counts[1]} != stored {counts[0]}")
    finally:
        stop(web)
        stop(worker)
        stop(redis_proc, signal.SIGKILL)
        drill_load.drop_database(database)
        if found:
            log = Path(workdir) / "worker.log"
            if log.exists():
                print("celery worker log (tail):\n" + log.read_text()[-3000:], flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report), flush=True)
    print("checked: 0 5xx, 0 error responses, 0 transport errors during the Redis outage;")
    print("         annotations in DB == accepted; no duplicates; no item over target;")
    print("         ProjectScore.annotations_scored == annotations in DB after Redis returns")
    if found:
        print("FAIL: " + "; ".join(found), flush=True)
        return 1
    print(
        f"PASS: {outcome['annotations']} annotations accepted and stored, Redis down "
        f"{report['outage_s']} s, scores caught up",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
