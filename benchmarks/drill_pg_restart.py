"""Fault drill: PostgreSQL restarted under load; the app recovers by itself, nothing is lost.

Creates a PRIVATE PostgreSQL cluster (initdb into a temporary directory, trust auth, a free
port; run as the `postgres` user when started as root) and a private redis-server, migrates
and seeds a project, and serves the app with gunicorn and production settings (CONN_MAX_AGE
as configured, CONN_HEALTH_CHECKS on). Annotator threads label in a closed loop
(POST /projects/{id}/next/, then POST /assignments/{id}/submit/, retrying a failed submit
until it is accepted) while the drill restarts the cluster with `pg_ctl restart -m fast`.

Defined outcome, checked:
- clean failures: while the database is down a request gets 503 JSON
  {"code": "database_unavailable"} with Retry-After (API errors are never HTML, never a stack
  trace), or the connection is refused; no request hangs (each ends within --hang seconds);
- recovery without restarting gunicorn: a request succeeds within --recover seconds of the
  database being back, and the same gunicorn master serves to the end;
- every failed submit succeeds on retry; nothing duplicated or lost: the database holds
  exactly one annotation per accepted assignment, and no (item, author) pair twice.

Prints each check; exits 1 on any violation; stops and removes the cluster.

    .venv/bin/python benchmarks/drill_pg_restart.py --annotators 16 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LABELS = [{"value": v, "hotkey": str(i + 1)} for i, v in enumerate(["pos", "neg", "neu"])]
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


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries directory, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


class Cluster:
    """A private PostgreSQL cluster in a temporary directory."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir, self.port = bindir, port
        self.data, self.log = root / "data", root / "postgres.log"
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(root, "postgres")
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.prefix, str(self.bindir / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def ctl(self, action: str, *extra: str) -> None:
        self.run("pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", *extra)

    def start(self) -> None:
        self.ctl("start", "-o", self.options)

    def restart(self) -> None:
        self.ctl("restart", "-m", "fast", "-o", self.options)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.ctl("stop", "-m", "immediate")


def seed(items: int, annotators: int) -> dict[str, Any]:
    """A single-label project with `items` items and `annotators` members with tokens."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation.models import Item
    from annotation.services import project_create
    from crowd.services import project_member_add

    owner = get_user_model().objects.create_user("drill-owner", password="x")
    project = project_create(user=owner, name="Drill", labels=LABELS, overlap=2, gold_ratio=0.0)
    Item.objects.bulk_create(
        [
            Item(project=project, data={"text": f"item {n}"}, content_hash=f"{n:064x}", target=2)
            for n in range(items)
        ],
        batch_size=5000,
    )
    tokens = []
    for n in range(annotators):
        user = get_user_model().objects.create_user(f"drill-{n}", password="x")
        project_member_add(project=project, username=user.username, role="annotator")
        tokens.append(Token.objects.create(user=user).key)
    return {"project": project.pk, "tokens": tokens}


class Stats:
    """What the annotators saw, shared between threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, float, int, str]] = []  # start, end, status, note
        self.accepted: set[int] = set()
        self.retried_ok = 0
        self.gave_up: list[int] = []

    def add(self, started: float, status: int, note: str) -> None:
        with self.lock:
            self.events.append((started, time.monotonic(), status, note))


def call(port: int, token: str, path: str, body: dict | None, timeout: float) -> tuple[int, Any]:
    """POST JSON; (status, parsed body or raw text); status 0 on a connection failure."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    try:
        conn.request("POST", path, body=json.dumps(body or {}), headers=headers)
        response = conn.getresponse()
        raw = response.read().decode(errors="replace")
        kind = response.getheader("Content-Type", "")
        retry_after = response.getheader("Retry-After")
    except OSError as exc:
        return 0, f"{type(exc).__name__}"
    finally:
        conn.close()
    if response.status >= 500:
        clean = (
            response.status == 503
            and "application/json" in kind
            and retry_after is not None
            and json.loads(raw).get("code") == "database_unavailable"
        )
        return response.status, ("clean" if clean else f"unclean: {kind} {raw[:200]!r}")
    return response.status, (json.loads(raw) if raw and "json" in kind else raw)


def annotator(port: int, token: str, project: int, until: float, stats: Stats, hang: float) -> None:
    """Closed-loop labeling; a failed submit is retried until accepted (or 60 s pass)."""
    rng = random.Random(token)
    while time.monotonic() < until:
        started = time.monotonic()
        status, body = call(port, token, f"/api/v1/projects/{project}/next/", None, hang)
        stats.add(started, status, body if isinstance(body, str) else "")
        if status == 204:
            return
        if status != 200:
            time.sleep(0.2)
            continue
        assignment = body["assignment"]
        payload = {"label": rng.choice(LABELS)["value"], "duration_ms": 800}
        give_up, failed = time.monotonic() + 60, False
        while True:
            started = time.monotonic()
            status, reply = call(
                port, token, f"/api/v1/assignments/{assignment}/submit/", payload, hang
            )
            stats.add(started, status, reply if isinstance(reply, str) else "")
            if status == 200:
                with stats.lock:
                    stats.accepted.add(assignment)
                    stats.retried_ok += failed
                break
            failed = True
            if time.monotonic() > give_up or status in (400, 403, 404, 409):
                with stats.lock:
                    stats.gave_up.append(assignment)
                break
            time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hang", type=float, default=15.0, help="max seconds for any request")
    parser.add_argument("--recover", type=float, default=10.0, help="max seconds to recover")
    args = parser.parse_args()
    bindir, redis_bin = pg_bin(), shutil.which("redis-server")
    if bindir is None or redis_bin is None:
        print("PostgreSQL server binaries or redis-server not found", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="drill-pg-"))
    pg_port, redis_port, http_port = free_port(), free_port(), free_port()
    cluster = Cluster(bindir, root, pg_port)
    redis = server = None
    try:
        cluster.start()
        redis = subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        url = f"postgres://postgres@127.0.0.1:{pg_port}/assay"
        import psycopg

        with psycopg.connect(f"postgres://postgres@127.0.0.1:{pg_port}/postgres") as admin:
            admin.autocommit = True
            admin.execute("CREATE DATABASE assay")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DATABASE_URL": url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DJANGO_SECRET_KEY": "drill-" + "k" * 50,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_LOG_LEVEL": "ERROR",
            "ASSAY_MEDIA_ROOT": str(root / "media"),
        }
        os.environ.update({**env, "DJANGO_SETTINGS_MODULE": "config.settings.local"})
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        setup = seed(args.items, args.annotators)
        connections.close_all()
        db = settings.DATABASES["default"]
        check(db.get("CONN_HEALTH_CHECKS") is True, "CONN_HEALTH_CHECKS is on")
        print(f"  CONN_MAX_AGE={db.get('CONN_MAX_AGE')}; cluster on :{pg_port}", flush=True)
        server = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "config.wsgi",
                "-b",
                f"127.0.0.1:{http_port}",
                "-w",
                str(args.workers),
                "--timeout",
                "60",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stderr=(root / "gunicorn.log").open("wb"),
        )
        tokens = setup["tokens"]
        up = False
        for _ in range(100):
            if call(http_port, tokens[0], "/api/v1/schema/", None, 2)[0] in (200, 405):
                up = True
                break
            time.sleep(0.3)
        check(up, f"gunicorn serving on :{http_port} (pid {server.pid})")
        stats = Stats()
        begin = time.monotonic()
        until = begin + args.seconds
        threads = [
            threading.Thread(
                target=annotator,
                args=(http_port, token, setup["project"], until, stats, args.hang),
            )
            for token in tokens
        ]
        for thread in threads:
            thread.start()
        time.sleep(args.seconds / 3)
        down_at = time.monotonic()
        cluster.restart()
        back_at = time.monotonic()
        print(f"  restarted PostgreSQL (pg_ctl restart -m fast) in {back_at - down_at:.2f}s")
        for thread in threads:
            thread.join(args.seconds + 120)
        check(not any(t.is_alive() for t in threads), "every annotator finished")
        events = sorted(stats.events)
        failed = [e for e in events if e[2] >= 500 or e[2] == 0]
        unclean = [e for e in failed if e[3].startswith("unclean")]
        longest = max((end - start for start, end, _, _ in events), default=0.0)
        statuses: dict[int, int] = {}
        for _, _, status, _ in events:
            statuses[status] = statuses.get(status, 0) + 1
        print(f"  {len(events)} requests; statuses {dict(sorted(statuses.items()))}", flush=True)
        check(bool(failed), f"{len(failed)} requests failed around the restart")
        check(not unclean, f"failures are clean (503 JSON + Retry-After): {unclean[:3]}")
        check(longest < args.hang, f"no request hung (longest {longest:.2f}s)")
        recovered = next(
            (end for start, end, status, _ in events if start >= back_at and status == 200), None
        )
        check(
            recovered is not None and recovered - back_at < args.recover,
            "a request succeeded "
            + (f"{recovered - back_at:.2f}s after the restart" if recovered else "never"),
        )
        late_failures = [e for e in failed if e[0] > back_at + args.recover]
        check(not late_failures, f"no failures {args.recover:.0f}s after the restart")
        check(server.poll() is None, "same gunicorn master still serving (no app restart)")
        check(not stats.gave_up, f"every failed submit retried to success ({stats.retried_ok})")
        with psycopg.connect(url) as conn:
            one = lambda sql: conn.execute(sql, [setup["project"]]).fetchone()[0]  # noqa: E731
            stored = one("SELECT count(*) FROM annotation_annotation WHERE project_id = %s")
            pairs = one(
                "SELECT count(*) FROM (SELECT item_id, author_id FROM annotation_annotation "
                "WHERE project_id = %s GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
            submitted = one(
                "SELECT count(*) FROM crowd_assignment a JOIN annotation_item i "
                "ON i.id = a.item_id WHERE i.project_id = %s AND a.status = 'submitted'"
            )
        accepted = len(stats.accepted)
        check(stored == accepted == submitted, f"{stored} stored = {accepted} accepted")
        check(pairs == 0, "no (item, author) annotated twice")
        print(f"  {accepted / args.seconds:.1f} annotations/s over {args.seconds:.0f}s")
    finally:
        if server is not None:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(15)
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("FAILED: " + "; ".join(FAILURES) if FAILURES else "all checks passed", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
