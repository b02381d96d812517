"""Time release_build on a large synthetic project and report the build's peak RSS.

Default: 100k items × 3 annotations (plus 1000 gold items), against a scratch PostgreSQL database
(`--items 1000000` for the million-item figure; the data is generated inside PostgreSQL):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_<you>_bench \\
        .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_<you>_bench \\
        .venv/bin/python benchmarks/release_bench.py --items 100000

Each build runs in a fresh child process, so its peak RSS (VmHWM) is the build's own plus
Django's start-up, which is reported separately; its rate is released items per second. The
project is kept between runs (found by name). Files go to a temporary media root that is
deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("REDIS_URL", "")


def _rss_mb() -> float:
    """Peak RSS of this process in MB. Linux keeps ru_maxrss across exec (it would include the
    parent's data set), so read the memory map's high-water mark, which exec resets."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _populate(n_items: int, overlap: int, n_workers: int, n_gold: int) -> int:
    """Create (or find) the synthetic project. Items and annotations are generated inside
    PostgreSQL with INSERT ... SELECT over generate_series, so 1,000,000 items take seconds to
    a minute rather than the hour of Python-side bulk_create; votes are 60/30/10 % positive/
    negative/neutral from a seeded random(), and each item's annotators are `overlap`
    consecutive workers from a per-item offset (never the same worker twice on an item)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotation.models import Annotation, Item, Project, ProjectMember

    name = f"release-bench-{n_items}x{overlap}"
    existing = Project.objects.filter(name=name).first()
    if existing is not None:
        return existing.pk
    users = get_user_model()
    owner, _ = users.objects.get_or_create(username="release-bench-owner")
    workers = [
        users.objects.get_or_create(username=f"release-bench-w{n}")[0] for n in range(n_workers)
    ]
    labels = ["positive", "negative", "neutral"]
    item_table, annotation_table = Item._meta.db_table, Annotation._meta.db_table
    total = n_items + n_gold
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            labels=[{"value": v, "hotkey": str(i + 1)} for i, v in enumerate(labels)],
            overlap=overlap,
            created_by=owner,
        )
        ProjectMember.objects.create(project=project, user=owner, role="owner")
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(0.11)")
            cursor.execute(
                f"""
                INSERT INTO {item_table} (project_id, data, content_hash, gold, is_gold, target,
                    slots_taken, annotation_count, priority, gold_retired, serve_rank, created_at)
                SELECT %(project)s,
                       jsonb_build_object('text', 'Review ' || g
                           || ': the product was fine, delivery slow.'),
                       %(project)s || '-' || g,
                       CASE WHEN g >= %(n_items)s THEN '{{"label": "positive"}}'::jsonb END,
                       g >= %(n_items)s, %(overlap)s, %(overlap)s, %(overlap)s, 0, false, 0, now()
                FROM generate_series(0, %(total)s - 1) AS g
                """,
                {"project": project.pk, "n_items": n_items, "overlap": overlap, "total": total},
            )
            print(f"  populated {total} items", flush=True)
            cursor.execute(
                f"""
                INSERT INTO {annotation_table} (project_id, item_id, author_id, value,
                    schema_version, duration_ms, client_key, created_at)
                SELECT i.project_id, i.id,
                       (%(workers)s::bigint[])[1 + ((i.id * 7919 + k) %% %(n_workers)s)],
                       CASE WHEN r < 0.6 THEN '{{"label": "positive"}}'::jsonb
                            WHEN r < 0.9 THEN '{{"label": "negative"}}'::jsonb
                            ELSE '{{"label": "neutral"}}'::jsonb END,
                       1, 1200, '', now()
                FROM {item_table} AS i
                CROSS JOIN generate_series(0, %(overlap)s - 1) AS k
                CROSS JOIN LATERAL (SELECT random() + k * 0 + i.id * 0 AS r) AS vote
                WHERE i.project_id = %(project)s
                ORDER BY i.id, k
                """,
                {
                    "project": project.pk,
                    "workers": [w.pk for w in workers],
                    "n_workers": n_workers,
                    "overlap": overlap,
                },
            )
            print(f"  populated {total * overlap} annotations", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {item_table}")
        cursor.execute(f"ANALYZE {annotation_table}")
    return project.pk


def _build_child(release_id: int) -> None:
    """Runs in a fresh process: time one build, print JSON with the figures."""
    import django

    django.setup()
    from quality.models import Release
    from quality.releases import release_build

    baseline = _rss_mb()
    release = Release.objects.get(pk=release_id)
    started = time.perf_counter()
    release = release_build(release=release)
    seconds = time.perf_counter() - started
    sizes = {f.format: f.size for f in release.files.all()}
    rows = ((release.manifest or {}).get("counts") or {}).get("items", 0)
    print(
        json.dumps(
            {
                "status": release.status,
                "error": release.error,
                "seconds": round(seconds, 2),
                "rows_per_second": round(rows / seconds) if seconds else None,
                "startup_rss_mb": round(baseline, 1),
                "peak_rss_mb": round(_rss_mb(), 1),
                "counts": (release.manifest or {}).get("counts"),
                "bytes": sizes,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--gold", type=int, default=1000)
    parser.add_argument(
        "--raw", choices=["no", "yes", "both"], default="both", help="include_raw builds to run"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _build_child(args.child)
        return

    media = tempfile.mkdtemp(prefix="release-bench-")
    os.environ["ASSAY_MEDIA_ROOT"] = media
    import django

    django.setup()
    from unittest import mock

    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # a fresh benchmark database works as it is

    from annotation.models import Project
    from quality import release_tasks
    from quality.releases import release_create

    started = time.perf_counter()
    project_id = _populate(args.items, args.overlap, args.workers, args.gold)
    print(f"data ready in {time.perf_counter() - started:.1f}s (project {project_id})")
    project = Project.objects.get(pk=project_id)
    raw_modes = {"no": (False,), "yes": (True,), "both": (False, True)}[args.raw]
    for include_raw in raw_modes:
        with mock.patch.object(release_tasks.release_build_task, "delay"):  # build it ourselves
            release = release_create(
                project=project, user=project.created_by, include_raw=include_raw
            )
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(release.pk)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "ASSAY_MEDIA_ROOT": media},
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"include_raw={include_raw}: {json.dumps(figures)}")
    subprocess.run(["rm", "-rf", media], check=True)


if __name__ == "__main__":
    main()
