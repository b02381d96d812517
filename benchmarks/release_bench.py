"""Time release_build on a large synthetic project and report the build's peak RSS.

Default: 100k items × 3 annotations (plus 1000 gold items), against a scratch PostgreSQL database:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_<you>_bench \\
        .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_<you>_bench \\
        .venv/bin/python benchmarks/release_bench.py --items 100000

Each build runs in a fresh child process, so its peak RSS (VmHWM) is the build's own plus
Django's start-up, which is reported separately. The project is kept between runs (found by
name) unless --fresh is given. Files go to a temporary media root that is deleted at the end.
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
    import numpy as np
    from django.contrib.auth import get_user_model

    from annotation.models import Annotation, Item, Project, ProjectMember

    name = f"release-bench-{n_items}x{overlap}"
    existing = Project.objects.filter(name=name).first()
    if existing is not None:
        return existing.pk
    users = get_user_model()
    rng = np.random.default_rng(11)
    owner, _ = users.objects.get_or_create(username="release-bench-owner")
    workers = [
        users.objects.get_or_create(username=f"release-bench-w{n}")[0] for n in range(n_workers)
    ]
    labels = ["positive", "negative", "neutral"]
    project = Project.objects.create(
        name=name,
        labels=[{"value": v, "hotkey": str(i + 1)} for i, v in enumerate(labels)],
        overlap=overlap,
        created_by=owner,
    )
    ProjectMember.objects.create(project=project, user=owner, role="owner")
    batch = 5000
    total = n_items + n_gold
    for start in range(0, total, batch):
        size = min(batch, total - start)
        items = Item.objects.bulk_create(
            [
                Item(
                    project=project,
                    data={"text": f"Review {start + i}: the product was fine, delivery slow."},
                    content_hash=f"{project.pk}-{start + i}",
                    is_gold=start + i >= n_items,
                    gold={"label": "positive"} if start + i >= n_items else None,
                    target=overlap,
                    slots_taken=overlap,
                    annotation_count=overlap,
                )
                for i in range(size)
            ]
        )
        votes = rng.choice(len(labels), size=(size, overlap), p=[0.6, 0.3, 0.1])
        authors = rng.choice(n_workers, size=(size, overlap), replace=True)
        Annotation.objects.bulk_create(
            [
                Annotation(
                    project=project,
                    item=item,
                    author=workers[(int(authors[r, k]) + k) % n_workers],
                    value={"label": labels[int(votes[r, k])]},
                    duration_ms=1200,
                )
                for r, item in enumerate(items)
                for k in range(overlap)
            ]
        )
        print(f"  populated {start + size}/{total} items", flush=True)
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
    print(
        json.dumps(
            {
                "status": release.status,
                "error": release.error,
                "seconds": round(seconds, 2),
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

    from annotation.models import Project
    from quality import release_tasks
    from quality.releases import release_create

    started = time.perf_counter()
    project_id = _populate(args.items, args.overlap, args.workers, args.gold)
    print(f"data ready in {time.perf_counter() - started:.1f}s (project {project_id})")
    project = Project.objects.get(pk=project_id)
    for include_raw in (False, True):
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
