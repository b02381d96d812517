"""Time quality_recompute, light and full, on a large synthetic project (100k items × 3 labels).

Runs: a cold full run (every row inserted), a full and a light run with nothing changed, then
a light and a full run after a burst of 300 new annotations (as between two debounced runs).
Two of the workers are spammers answering at random, so the rules have something to find.

Run against a scratch PostgreSQL database (it creates and finally deletes its own project):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_<you> \\
        .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_<you> \\
        .venv/bin/python benchmarks/quality_recompute.py --items 100000 --overlap 3
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


def main() -> None:
    import django

    django.setup()
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection, reset_queries

    from annotation.models import Annotation, Item, Project, ProjectMember
    from quality.models import ItemScore, QualityAction, WorkerScore
    from quality.services import quality_recompute

    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--gold", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the project for profiling")
    parser.add_argument("--profile", action="store_true", help="cProfile the light runs")
    args = parser.parse_args()

    users = get_user_model()
    rng = np.random.default_rng(7)
    owner, _ = users.objects.get_or_create(username="bench-owner")
    workers = [
        users.objects.get_or_create(username=f"bench-worker-{n}")[0] for n in range(args.workers)
    ]
    labels = ["positive", "negative", "neutral"]
    project = Project.objects.create(
        name="benchmark",
        labels=[{"value": v, "hotkey": str(i + 1)} for i, v in enumerate(labels)],
        overlap=args.overlap,
        created_by=owner,
    )
    ProjectMember.objects.create(project=project, user=owner, role="owner")
    started = time.perf_counter()
    try:
        n_items = args.items + args.gold
        truth = rng.integers(0, len(labels), n_items)
        Item.objects.bulk_create(
            [
                Item(
                    project=project,
                    data={"text": f"text {n}"},
                    content_hash=f"{n:064x}",
                    is_gold=n < args.gold,
                    gold={"label": labels[truth[n]]} if n < args.gold else None,
                    target=args.overlap,
                    slots_taken=args.overlap,
                    annotation_count=args.overlap,
                )
                for n in range(n_items)
            ],
            batch_size=5000,
        )
        item_ids = list(project.items.order_by("id").values_list("id", flat=True))
        annotations = []
        for position, item_id in enumerate(item_ids):
            chosen = rng.choice(len(workers), size=args.overlap, replace=False)
            for worker_index in chosen:
                right = worker_index >= 2 and rng.random() < 0.8  # workers 0, 1: spammers
                label = truth[position] if right else rng.integers(0, len(labels))
                annotations.append(
                    Annotation(
                        project=project,
                        item_id=item_id,
                        author=workers[worker_index],
                        value={"label": labels[label]},
                        duration_ms=int(rng.integers(500, 9000)),
                    )
                )
        Annotation.objects.bulk_create(annotations, batch_size=5000)
        with connection.cursor() as cursor:  # spread submissions over a month, like real work
            cursor.execute(
                "UPDATE annotation_annotation SET created_at = now() - random() * interval "
                "'30 days' WHERE project_id = %s",
                [project.pk],
            )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE annotation_annotation; ANALYZE annotation_item")
        print(
            f"setup: {len(item_ids)} items, {len(annotations)} annotations "
            f"in {time.perf_counter() - started:.1f}s ({connection.vendor})"
        )
        late = users.objects.get_or_create(username="bench-worker-late")[0]
        plan = [
            (True, "full, cold: every row inserted"),
            (True, "full, nothing changed"),
            (False, "light, nothing changed"),
            (False, "light, after a burst of 300 new annotations"),
            (True, "full, after another burst of 300"),
        ]
        for run, (full, note) in enumerate(plan):
            if "burst" in note:
                Annotation.objects.bulk_create(
                    Annotation(
                        project=project,
                        item_id=item_id,
                        author=late,
                        value={"label": labels[(run + item_id) % len(labels)]},
                        duration_ms=900,
                    )
                    for item_id in item_ids[run * 300 : run * 300 + 300]
                )
            reset_queries()
            began = time.perf_counter()
            if args.profile and not full:
                profiler = cProfile.Profile()
                score = profiler.runcall(quality_recompute, project=project, full=full)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            else:
                score = quality_recompute(project=project, full=full)
            elapsed = time.perf_counter() - began
            print(
                f"run {run + 1} ({note}): {elapsed:.2f}s  method={score.details.get('method')} "
                f"kappa={score.fleiss_kappa:.4f} items={score.items_scored} "
                f"annotations={score.annotations_scored} "
                f"item_scores={ItemScore.objects.filter(project=project).count()} "
                f"worker_scores={WorkerScore.objects.filter(project=project).count()} "
                f"actions={QualityAction.objects.filter(project=project).count()}"
            )
    finally:
        if not args.keep:
            project.delete()


if __name__ == "__main__":
    main()
