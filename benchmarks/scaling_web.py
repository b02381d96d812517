"""Scale-out figures for the web tier and PostgreSQL connections, measured on this machine.

Creates a fresh PostgreSQL database (assay_scaleweb_<pid>) seeded like drill_load.py (a project
of N items with overlap 3, one API token per annotator), then runs closed-loop annotators
(benchmarks/load.py, "separate" mode: next + submit) against gunicorn started with the
production settings and platform/gunicorn.conf.py (gthread, GUNICORN_THREADS threads), phase
after phase, each for a fixed number of seconds:

  a) one gunicorn master with 1, 2 and 4 worker processes: annotations/s and latency
     -> where the web tier stops scaling on this machine;
  b) two independent gunicorn masters ("two web containers") bound to the SAME port with
     GUNICORN_REUSE_PORT=1 (SO_REUSEPORT: the kernel spreads connections), sharing Redis and
     PostgreSQL: the split of requests between them (their access logs) and nothing lost;
  c) DJANGO_DB_POOL_MAX_SIZE (Django's psycopg pool per process) against persistent
     connections (DJANGO_CONN_MAX_AGE=60): peak connections in pg_stat_activity, throughput,
     latency; then SHOW max_connections and the connection budget.

Every phase records the peak number of server connections to the database, and checks that
the annotations it stored equal the submits that were answered 200. At the end the whole
database is checked as drill_load.py does (no duplicate (item, worker), no item over its
target, counters match). Prints one JSON line per phase and a summary; exits 1 on any lost,
duplicated or failed submission; always stops its servers and drops its database.

    .venv/bin/python benchmarks/scaling_web.py --annotators 32 --seconds 15 --port 18100
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drill_load  # noqa: E402  (safe_annotator, violations, drop_database)
import load  # noqa: E402  (prepare, pct, check_database)

ROOT = load.ROOT
PG = load.PG
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
CONFIG = ROOT / "platform" / "gunicorn.conf.py"
START_TIMEOUT = 60  # seconds for a master's workers to import Django on a busy machine
WARMUP_TIMEOUT = 60  # seconds for every worker to have served a submit before measuring
# platform/gunicorn.conf.py's access log, plus the worker pid (to see every worker warm).
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}i)s pid=%(p)s'


# --- processes ----------------------------------------------------------------------------------


class Master:
    """One gunicorn master (one "web container"), its access log in a file of its own."""

    def __init__(self, name: str, database: str, port: int, log_dir: Path, **env: str) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DATABASE_URL": f"{PG}/{database}",
            "DJANGO_SECRET_KEY": "benchmark-" + "k" * 50,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_LOG_LEVEL": "WARNING",
            "GUNICORN_LOG_LEVEL": "warning",
            # No recycling mid-phase: a worker re-importing Django would be noise in a 15 s run.
            "GUNICORN_MAX_REQUESTS": "0",
            **env,
        }
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [
                    str(GUNICORN),
                    "config.wsgi",
                    *("-c", str(CONFIG), "-b", f"127.0.0.1:{port}"),
                    *("--access-logformat", ACCESS_LOG_FORMAT),
                ],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def requests(self, marker: str = '"POST /api/v1/') -> int:
        """How many requests (access-log lines containing `marker`) this master answered."""
        return sum(marker in line for line in self.log.read_text(errors="replace").splitlines())

    def warm(self) -> bool:
        """Every worker of this master has answered a submit (its first requests are slow)."""
        text = self.log.read_text(errors="replace")
        served = {
            line.rsplit("pid=", 1)[1].strip().strip("<>")  # gunicorn writes %(p)s as <pid>
            for line in text.splitlines()
            if "/submit/" in line and "pid=" in line
        }
        return {str(pid) for pid in self.worker_pids()} <= served

    def answered(self, request_id: str) -> bool:
        return f"rid={request_id}" in self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == self.proc.pid:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def get(port: int, path: str, request_id: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"X-Request-ID": request_id})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_until_serving(port: int, masters: list[Master]) -> None:
    """Poll /healthz on the shared port until every master has answered at least once."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(masters)
    while waiting and time.monotonic() < deadline:
        for master in waiting:
            if master.proc.poll() is not None:
                raise RuntimeError(f"{master.name} exited:\n{master.log.read_text()[-3000:]}")
        request_id = uuid.uuid4().hex
        try:
            status = get(port, "/healthz", request_id)
        except OSError:
            time.sleep(0.3)
            continue
        if status != 200:
            time.sleep(0.3)
            continue
        time.sleep(0.05)  # the access log line is written just after the response
        waiting = [master for master in waiting if not master.answered(request_id)]
    if waiting:
        names = ", ".join(master.name for master in waiting)
        raise RuntimeError(f"not serving after {START_TIMEOUT} s: {names}")


# --- measuring ----------------------------------------------------------------------------------


class ConnectionPeak:
    """Sample pg_stat_activity for `database` every 0.1 s in a thread; keep the peak.

    Also follows the CPU time of each server process seen (first and last sample), so
    `cpu_seconds` is what PostgreSQL spent serving this database meanwhile.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self.peak = 0
        self.samples = 0
        self._cpu: dict[int, list[float]] = {}  # pid -> [first, last]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            while not self._stop.is_set():
                pids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.database]
                    )
                ]
                self.peak = max(self.peak, len(pids))
                self.samples += 1
                for pid in pids:
                    self._cpu.setdefault(pid, [cpu_seconds([pid])] * 2)[1] = cpu_seconds([pid])
                self._stop.wait(0.1)

    @property
    def cpu_seconds(self) -> float:
        return sum(last - first for first, last in self._cpu.values())

    def __enter__(self) -> ConnectionPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def annotations_in(database: str) -> int:
    return load.check_database(database)["annotations_in_db"]


def run_annotators(port: int, setup: dict, annotators: int, seconds: float) -> list[dict]:
    jobs = [
        (port, setup["tokens"][n], setup["project"], "separate", seconds, n)
        for n in range(annotators)
    ]
    with mp.get_context("fork").Pool(annotators) as pool:
        return pool.map(drill_load.safe_annotator, jobs)


def warm_up(port: int, setup: dict, masters: list[Master], annotators: int) -> dict:
    """Label in 2 s bursts until every worker has served a submit; the bursts' counters.

    A worker's first requests import the views and fill caches, which takes seconds on a busy
    2-core machine: measured phases must not include that.
    """
    totals: dict = {}
    deadline = time.monotonic() + WARMUP_TIMEOUT
    while True:
        for result in run_annotators(port, setup, annotators, 2):
            for key, value in result["counters"].items():
                totals[key] = totals.get(key, 0) + value
            if "error" in result:
                totals.setdefault("error_samples", []).append(result["error"])
        time.sleep(0.2)
        if all(master.warm() for master in masters):
            return totals
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not all warm after {WARMUP_TIMEOUT} s")


def run_phase(
    label: str,
    database: str,
    port: int,
    setup: dict,
    masters: list[Master],
    args: argparse.Namespace,
) -> dict:
    """Run the annotators once against `port`; figures of the run and its checks."""
    warmup = warm_up(port, setup, masters, args.annotators)
    pids = [pid for master in masters for pid in master.worker_pids()]
    before_db = annotations_in(database)
    before_requests = [master.requests() for master in masters]
    cpu_before = cpu_seconds(pids)
    load_before = os.getloadavg()[0]
    clients_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with ConnectionPeak(database) as peak:
        started = time.perf_counter()
        results = run_annotators(port, setup, args.annotators, args.seconds)
        wall = time.perf_counter() - started
    clients_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    clients_cpu = sum(
        getattr(clients_after, f) - getattr(clients_before, f) for f in ("ru_utime", "ru_stime")
    )
    time.sleep(0.2)  # last access-log lines
    totals: dict[str, int] = {}
    latencies: dict[str, list[float]] = {"next": [], "submit": []}
    samples = []
    for result in results:
        for key, value in result["counters"].items():
            totals[key] = totals.get(key, 0) + value
        for key in latencies:
            latencies[key].extend(result["lat"].get(key, []))
        if "error" in result:
            samples.append(result["error"])
    stored = annotations_in(database) - before_db
    accepted = max(1, totals.get("annotations", 0))
    report: dict = {
        "phase": label,
        "annotators": args.annotators,
        "seconds": round(wall, 1),
        "annotations": totals.get("annotations", 0),
        "annotations_per_s": round(totals.get("annotations", 0) / wall, 1),
        "stored": stored,
        "5xx": totals.get("5xx", 0),
        "errors": totals.get("errors", 0),
        "transport_errors": totals.get("transport_errors", 0),
        "peak_pg_connections": peak.peak,
        "cpu_ms_per_annotation": {
            "gunicorn": round((cpu_seconds(pids) - cpu_before) / accepted * 1000, 1),
            "postgres": round(peak.cpu_seconds / accepted * 1000, 1),
            "clients": round(clients_cpu / accepted * 1000, 1),
        },
        "loadavg_1m_before": round(load_before, 2),
        "warmup": warmup,
    }
    for key, values in latencies.items():
        if values:
            report[f"{key}_p50_ms"] = round(load.pct(values, 0.50), 1)
            report[f"{key}_p95_ms"] = round(load.pct(values, 0.95), 1)
    if len(masters) > 1:
        report["requests_per_master"] = {
            master.name: master.requests() - before
            for master, before in zip(masters, before_requests, strict=True)
        }
    if samples:
        report["transport_error_samples"] = samples[:3]
    return report


def phase_problems(report: dict) -> list[str]:
    found = [
        f"warm-up {key}: {report['warmup'][key]}"
        for key in ("5xx", "errors", "transport_errors")
        if report["warmup"].get(key)
    ]
    if report["stored"] != report["annotations"]:
        found.append(f"stored {report['stored']} != accepted {report['annotations']}")
    for key in ("5xx", "errors", "transport_errors"):
        if report[key]:
            found.append(f"{key}: {report[key]}")
    if not report["annotations"]:
        found.append("no annotation was accepted")
    split = report.get("requests_per_master")
    if split and min(split.values()) == 0:
        found.append(f"one master answered nothing: {split}")
    return found


def serve_and_run(
    label: str,
    database: str,
    port: int,
    setup: dict,
    args: argparse.Namespace,
    log_dir: Path,
    masters_env: list[dict[str, str]],
) -> dict:
    masters = []
    try:
        for n, env in enumerate(masters_env):
            masters.append(Master(f"{label}-{n}", database, port, log_dir, **env))
            if n == 0:  # the first one alone, so a failure to bind shows who failed
                wait_until_serving(port, masters)
        wait_until_serving(port, masters)
        report = run_phase(label, database, port, setup, masters, args)
    finally:
        for master in masters:
            master.stop()
    report["problems"] = phase_problems(report)
    print(json.dumps(report), flush=True)
    return report


def pg_limits(database: str) -> dict:
    import psycopg

    with psycopg.connect(f"{PG}/{database}") as conn:
        show = lambda name: int(conn.execute(f"SHOW {name}").fetchone()[0])  # noqa: E731
        return {
            "max_connections": show("max_connections"),
            "superuser_reserved_connections": show("superuser_reserved_connections"),
        }


def budget(limits: dict, threads: int, workers: int, pool_size: int) -> dict:
    """Web containers of `workers` processes that fit under max_connections, both ways.

    Reserved for the rest: superuser slots, 2 Celery containers x 4 processes, beat, 5 spare.
    """
    others = 2 * 4 + 1 + 5
    free = limits["max_connections"] - limits["superuser_reserved_connections"] - others
    return {
        "free_for_web": free,
        "per_container_persistent": workers * threads,
        "per_container_pooled": workers * pool_size,
        "web_containers_persistent": free // (workers * threads),
        "web_containers_pooled": free // (workers * pool_size),
        "assumed_others": f"{others} (2 worker containers x 4 processes, beat, 5 spare)",
    }


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=4, help="GUNICORN_THREADS")
    parser.add_argument("--pool-sizes", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--overlap", type=int, default=3)
    args = parser.parse_args()
    database = f"assay_scaleweb_{os.getpid()}"
    port = args.port or load.free_port()
    common = {"REDIS_URL": args.redis_url, "GUNICORN_THREADS": str(args.threads)}
    reports: list[dict] = []
    started = time.monotonic()
    print(
        f"scaling_web: {database}, {args.items} items, {args.annotators} annotators, "
        f"{args.seconds} s per phase, port {port}, {os.cpu_count()} CPUs",
        flush=True,
    )
    try:
        setup = load.prepare(database, args.items, args.annotators, args.overlap)
        print(f"seeded in {time.monotonic() - started:.0f} s", flush=True)
        from django.db import connections

        connections.close_all()  # the seeding connection must not count in pg_stat_activity
        limits = pg_limits(database)
        with tempfile.TemporaryDirectory(prefix="scaling_web_") as tmp:
            log_dir = Path(tmp)
            for workers in args.workers:
                env = {**common, "WEB_CONCURRENCY": str(workers), "DJANGO_CONN_MAX_AGE": "60"}
                reports.append(
                    serve_and_run(
                        f"a-workers-{workers}", database, port, setup, args, log_dir, [env]
                    )
                )
            half = max(1, max(args.workers) // 2)
            env = {**common, "WEB_CONCURRENCY": str(half), "GUNICORN_REUSE_PORT": "1"}
            reports.append(
                serve_and_run(
                    f"b-two-masters-{half}-workers-each",
                    database,
                    port,
                    setup,
                    args,
                    log_dir,
                    [env, env],
                )
            )
            for size in args.pool_sizes:
                env = {
                    **common,
                    "WEB_CONCURRENCY": str(max(args.workers)),
                    "DJANGO_DB_POOL_MAX_SIZE": str(size),
                }
                reports.append(
                    serve_and_run(f"c-pool-{size}", database, port, setup, args, log_dir, [env])
                )
        checks = load.check_database(database)
    finally:
        drill_load.drop_database(database)
        print(f"dropped {database}", flush=True)
    accepted = sum(r["annotations"] + r["warmup"].get("annotations", 0) for r in reports)
    found = [f"{r['phase']}: {p}" for r in reports for p in r["problems"]]
    found += drill_load.violations({"annotations": accepted}, checks)
    workers = max(args.workers)
    print(json.dumps({"checks": checks, "accepted": accepted}), flush=True)
    print(json.dumps({"postgresql": limits}), flush=True)
    for size in args.pool_sizes:
        print(json.dumps({"budget": budget(limits, args.threads, workers, size)}), flush=True)
    print(
        "phase                              ann/s  submit p50/p95 ms  PG conns  "
        "CPU ms/annotation web/pg/clients  load"
    )
    for r in reports:
        cpu = r["cpu_ms_per_annotation"]
        print(
            f"{r['phase']:<34} {r['annotations_per_s']:>5}  "
            f"{r.get('submit_p50_ms', '-'):>7} / {r.get('submit_p95_ms', '-'):<7}  "
            f"{r['peak_pg_connections']:>8}  "
            f"{cpu['gunicorn']:>9} / {cpu['postgres']} / {cpu['clients']:<12}  "
            f"{r['loadavg_1m_before']:>4}  {r.get('requests_per_master', '')}"
        )
    print(f"total {time.monotonic() - started:.0f} s", flush=True)
    if found:
        print("FAIL: " + "; ".join(found), flush=True)
        return 1
    print(f"PASS: {accepted} annotations accepted and stored, nothing lost or duplicated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
