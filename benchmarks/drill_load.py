"""Load drill: many concurrent annotators through gunicorn on PostgreSQL, nothing lost.

Creates a fresh database (assay_drill_load_<pid>), migrates and seeds it (a project of N items
with overlap 3 and one API token per annotator), starts gunicorn itself with production
settings, runs the annotators of benchmarks/load.py for a bounded time, stops gunicorn, then
checks from the database:

- annotations in the database == accepted submit responses (nothing lost, nothing extra)
- no (item, worker) pair annotated twice; no item over its target; item counters match
- zero 5xx responses, zero other error responses, zero transport errors

Prints what it checked, exits 1 on any violation, and always drops its database.

    .venv/bin/python benchmarks/drill_load.py --annotators 64 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402  (benchmarks/load.py: seeding, gunicorn, annotators, checks)

PG = load.PG


def safe_annotator(args: tuple) -> dict:
    """load.annotator, with a transport failure (refused, reset, timeout) counted, not raised."""
    try:
        result = load.annotator(args)
    except Exception as error:  # noqa: BLE001 - every transport failure is a finding
        return {
            "lat": {},
            "counters": {"annotations": 0, "5xx": 0, "errors": 0, "transport_errors": 1},
            "error": repr(error),
        }
    result["counters"]["transport_errors"] = 0
    return result


def run_annotators(port: int, setup: dict, mode: str, annotators: int, seconds: float) -> dict:
    """Run the closed-loop annotators in parallel processes; totals and latencies."""
    import multiprocessing as mp

    jobs = [
        (port, setup["tokens"][n], setup["project"], mode, seconds, n) for n in range(annotators)
    ]
    started = time.perf_counter()
    with mp.get_context("fork").Pool(annotators) as pool:
        results = pool.map(safe_annotator, jobs)
    wall = time.perf_counter() - started
    totals: dict[str, int] = {}
    latencies: list[float] = []
    errors = []
    for result in results:
        for key, value in result["counters"].items():
            totals[key] = totals.get(key, 0) + value
        for values in result["lat"].values():
            latencies.extend(values)
        if "error" in result:
            errors.append(result["error"])
    report = {"mode": mode, "annotators": annotators, "seconds": round(wall, 1), **totals}
    report["annotations_per_s"] = round(totals.get("annotations", 0) / wall, 1)
    if latencies:
        report["p50_ms"] = round(load.pct(latencies, 0.50), 1)
        report["p99_ms"] = round(load.pct(latencies, 0.99), 1)
    if errors:
        report["transport_error_samples"] = errors[:5]
    return report


def violations(run: dict, checks: dict) -> list[str]:
    """What went wrong, in words (empty when the drill passed)."""
    found = []
    if checks["annotations_in_db"] != run.get("annotations", 0):
        found.append(
            f"annotations in DB {checks['annotations_in_db']} != accepted responses "
            f"{run.get('annotations', 0)}"
        )
    for key in ("duplicate_item_worker", "overlap_violations", "counter_mismatches"):
        if checks[key]:
            found.append(f"{key}: {checks[key]}")
    for key in ("5xx", "errors", "transport_errors"):
        if run.get(key):
            found.append(f"{key}: {run[key]}")
    if not run.get("annotations"):
        found.append("no annotation was accepted")
    return found


def drop_database(database: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--annotators", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--mode", choices=["separate", "combined"], default="separate")
    args = parser.parse_args()
    database = f"assay_drill_load_{os.getpid()}"

    print(f"drill_load: {database}, {args.items} items, overlap {args.overlap}", flush=True)
    try:
        setup = load.prepare(database, args.items, args.annotators, args.overlap)
        port = load.free_port()
        server = load.start_gunicorn(database, port, args.workers)
        print(f"gunicorn pid {server.pid} on 127.0.0.1:{port}, {args.workers} workers", flush=True)
        try:
            run = run_annotators(port, setup, args.mode, args.annotators, args.seconds)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        checks = load.check_database(database)
    finally:
        drop_database(database)
    print(json.dumps({"run": run}), flush=True)
    print(json.dumps({"checks": checks}), flush=True)
    found = violations(run, checks)
    print("checked: annotations in DB == accepted responses; no duplicate (item, worker); ")
    print("         no item over its target; item counters match; 0 5xx; 0 errors; 0 transport")
    if found:
        print("FAIL: " + "; ".join(found), flush=True)
        return 1
    print(
        f"PASS: {run['annotations']} annotations accepted and stored by {args.annotators} "
        f"annotators in {run['seconds']} s ({run['annotations_per_s']}/s)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
