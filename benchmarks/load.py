"""Load test: annotators labeling through the API against gunicorn on PostgreSQL.

Creates a fresh database with a project of N items, serves the app the way production does
(gunicorn, several workers, production settings, Redis cache and broker), then runs closed-loop
annotators for a bounded time, in two modes:

- separate: POST /projects/{id}/next/ then POST /assignments/{id}/submit/
- combined: POST /assignments/{id}/submit/?next=1 (one round trip per annotation)

Prints annotations/s, p50/p95/p99 latency per endpoint, and correctness counts read from the
database afterwards (overlap violations, duplicate assignments, lost annotations, 5xx).

    .venv/bin/python benchmarks/load.py --items 100000 --annotators 32 --seconds 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"
LABELS = [{"value": v, "hotkey": str(i + 1)} for i, v in enumerate(["pos", "neg", "neu"])]


def django_setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def prepare(database: str, items: int, annotators: int, overlap: int) -> dict:
    """Create the database, the project, its items and the annotators with tokens."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    django_setup(f"{PG}/{database}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import hashlib

    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation.models import Item
    from annotation.services import project_create
    from crowd.services import project_member_add

    owner = get_user_model().objects.create_user("bench-owner", password="x")
    project = project_create(
        user=owner, name="Load", labels=LABELS, overlap=overlap, gold_ratio=0.0
    )
    batch = []
    for n in range(items):
        text = f"Benchmark item {n}: {random.random()}"
        batch.append(
            Item(
                project=project,
                data={"text": text},
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                target=overlap,
            )
        )
        if len(batch) == 10_000:
            Item.objects.bulk_create(batch)
            batch = []
    Item.objects.bulk_create(batch)
    tokens = []
    for n in range(annotators):
        user = get_user_model().objects.create_user(f"bench-{n}", password="x")
        project_member_add(project=project, username=user.username, role="annotator")
        tokens.append(Token.objects.create(user=user).key)
    with __import__("django.db").db.connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"project": project.pk, "tokens": tokens}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(database: str, port: int, workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": f"{PG}/{database}",
        "REDIS_URL": "redis://127.0.0.1:6379/12",
        "DJANGO_SECRET_KEY": "benchmark-" + "k" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    cmd = [
        str(ROOT / ".venv/bin/gunicorn"),
        "config.wsgi",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
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


def annotator(args: tuple) -> dict:
    """One closed-loop annotator: returns its latencies per endpoint and counters."""
    port, token, project_id, mode, seconds, seed = args
    rng = random.Random(seed)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    lat: dict[str, list[float]] = {"next": [], "submit": [], "submit+next": []}
    counters = {"annotations": 0, "5xx": 0, "errors": 0, "exhausted": 0}

    def call(path: str, body: dict | None) -> tuple[int, dict | None, float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        conn.request("POST", path, body=json.dumps(body or {}), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        if response.status >= 500:
            counters["5xx"] += 1
        return response.status, (json.loads(raw) if raw else None), elapsed

    end = time.monotonic() + seconds
    current = None
    while time.monotonic() < end:
        if current is None:
            status, body, elapsed = call(f"/api/v1/projects/{project_id}/next/", None)
            lat["next"].append(elapsed)
            if status == 204:
                counters["exhausted"] += 1
                break
            if status != 200:
                counters["errors"] += 1
                continue
            current = body
        label = rng.choice(LABELS)["value"]
        payload = {"label": label, "duration_ms": rng.randint(500, 5000)}
        path = f"/api/v1/assignments/{current['assignment']}/submit/"
        if mode == "combined":
            status, body, elapsed = call(path + "?next=1", payload)
            lat["submit+next"].append(elapsed)
            current = body.get("next") if status == 200 and body else None
            if status == 200 and current is None:
                counters["annotations"] += 1
                counters["exhausted"] += 1
                break
        else:
            status, body, elapsed = call(path, payload)
            lat["submit"].append(elapsed)
            current = None
        if status == 200:
            counters["annotations"] += 1
        else:
            counters["errors"] += 1
    return {"lat": lat, "counters": counters}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def check_database(database: str) -> dict:
    import psycopg

    with psycopg.connect(f"{PG}/{database}") as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "annotations_in_db": one("SELECT count(*) FROM annotation_annotation"),
            "overlap_violations": one(
                "SELECT count(*) FROM (SELECT item_id FROM annotation_annotation a "
                "JOIN annotation_item i ON i.id = a.item_id GROUP BY item_id, i.target "
                "HAVING count(*) > i.target) v"
            ),
            "duplicate_item_worker": one(
                "SELECT count(*) FROM (SELECT item_id, author_id FROM annotation_annotation "
                "GROUP BY 1, 2 HAVING count(*) > 1) d"
            ),
            "counter_mismatches": one(
                "SELECT count(*) FROM annotation_item i WHERE i.annotation_count <> "
                "(SELECT count(*) FROM annotation_annotation a WHERE a.item_id = i.id)"
            ),
        }


def cpu_seconds(names: tuple[str, ...]) -> dict[str, float]:
    """CPU time (user + system) used so far by processes whose command line names them."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys(names, 0.0)
    for pid in (entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        for name in names:
            if name in cmdline:
                totals[name] += (int(fields[11]) + int(fields[12])) / ticks
                break
    return totals


def run_mode(port: int, setup: dict, mode: str, annotators: int, seconds: float) -> dict:
    cpu_before = cpu_seconds(("gunicorn", "postgres"))
    jobs = [
        (port, setup["tokens"][n], setup["project"], mode, seconds, n) for n in range(annotators)
    ]
    started = time.perf_counter()
    with mp.get_context("fork").Pool(annotators) as pool:
        results = pool.map(annotator, jobs)
    wall = time.perf_counter() - started
    lat: dict[str, list[float]] = {}
    totals: dict[str, int] = {}
    for result in results:
        for key, values in result["lat"].items():
            lat.setdefault(key, []).extend(values)
        for key, value in result["counters"].items():
            totals[key] = totals.get(key, 0) + value
    report = {"mode": mode, "annotators": annotators, "seconds": round(wall, 1), **totals}
    report["annotations_per_s"] = round(totals["annotations"] / wall, 1)
    cpu_after = cpu_seconds(("gunicorn", "postgres"))
    if totals["annotations"]:
        report["cpu_ms_per_annotation"] = {
            name: round((cpu_after[name] - cpu_before[name]) / totals["annotations"] * 1000, 2)
            for name in cpu_before
        }
    for key, values in lat.items():
        if values:
            report[key] = {
                "n": len(values),
                "p50_ms": round(pct(values, 0.50), 1),
                "p95_ms": round(pct(values, 0.95), 1),
                "p99_ms": round(pct(values, 0.99), 1),
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["separate", "combined"])
    parser.add_argument("--database", default="assay_bench_load")
    args = parser.parse_args()

    print(f"preparing {args.items} items on PostgreSQL ({args.database}) …", flush=True)
    setup = prepare(args.database, args.items, max(args.annotators), args.overlap)
    port = free_port()
    server = start_gunicorn(args.database, port, args.workers)
    accepted = 0
    try:
        for mode in args.modes:
            for count in args.annotators:
                report = run_mode(port, setup, mode, count, args.seconds)
                accepted += report["annotations"]
                print(json.dumps(report), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    checks = check_database(args.database)
    checks["accepted_responses"] = accepted
    checks["lost_or_extra"] = checks["annotations_in_db"] - accepted
    print(json.dumps({"correctness": checks}), flush=True)
    bad = checks["overlap_violations"] or checks["duplicate_item_worker"] or checks["lost_or_extra"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
