"""Time a run of labeling rules: 100,000 text items x 5 rules (keywords, regex, field).

Against a scratch PostgreSQL database (items are generated inside PostgreSQL; the project is
kept between runs, found by name):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_bench_rules \\
        .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_bench_rules \\
        .venv/bin/python benchmarks/rules_bench.py --items 100000

Prints the whole run (streaming items, matching, stats, writing the pre-labels), the parts spent
matching and in annotation.predictions.predictions_replace, and each rule's stats.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("REDIS_URL", "")

WORDS = "good great bad awful plot acting movie boring fun refund slow story ending music"

RULES = [
    ("positive words", "keywords", "positive", {"keywords": ["great", "fun", "well done"]}),
    ("negative words", "keywords", "negative", {"keywords": ["awful", "boring"]}),
    ("refunds", "regex", "negative", {"pattern": r"\brefund\w*\b", "ignore_case": True}),
    ("ids", "regex", "positive", {"pattern": r"#\d*7\b"}),
    ("stars", "field", "positive", {"field": "stars", "operator": "greater_than", "value": 3}),
]


def _populate(n_items: int) -> int:
    """Create (or find) the project with `n_items` reviews made of random words and stars."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotation.models import Project, ProjectMember

    name = f"rules-bench-v2-{n_items}"
    existing = Project.objects.filter(name=name).first()
    if existing is not None:
        return existing.pk
    owner, _ = get_user_model().objects.get_or_create(username="rules-bench-owner")
    labels = [{"value": "positive", "hotkey": "1"}, {"value": "negative", "hotkey": "2"}]
    with transaction.atomic():
        project = Project.objects.create(name=name, labels=labels, created_by=owner, overlap=3)
        ProjectMember.objects.create(project=project, user=owner, role="owner")
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO annotation_item
                    (project_id, data, content_hash, is_gold, target, slots_taken,
                     annotation_count, priority, gold_retired, serve_rank, created_at)
                SELECT %s,
                       jsonb_build_object(
                           'text', (SELECT string_agg(w[1 + floor(random() * 14)::int], ' ')
                                    FROM generate_series(1, 5 + g %% 3) n,
                                         string_to_array(%s, ' ') w) || ' #' || g,
                           'stars', 1 + g %% 5),
                       md5(g::text), false, 3, 0, 0, 0, false, 0, now()
                FROM generate_series(1, %s) g
                """,
                [project.pk, WORDS, n_items],
            )
    return project.pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()

    import django

    django.setup()
    from annotation.models import Prediction, Project
    from quality.models import LabelingRule
    from quality.rules import running
    from quality.rules.kinds import config_clean

    project = Project.objects.get(pk=_populate(args.items))
    LabelingRule.objects.filter(project=project).delete()
    owner = project.created_by
    for name, kind, label, config in RULES:
        LabelingRule.objects.create(
            project=project,
            name=name,
            kind=kind,
            label=label,
            config=config_clean(kind, config),
            created_by=owner,
        )
    writing = []
    replace = running.predictions_replace

    def timed_replace(**kwargs: object) -> int:
        started = time.perf_counter()
        count = replace(**kwargs)
        writing.append(time.perf_counter() - started)
        return count

    running.predictions_replace = timed_replace
    started = time.perf_counter()
    written = running.rules_run(project=project)
    total = time.perf_counter() - started
    rules = list(LabelingRule.objects.filter(project=project).order_by("pk"))
    matching = sum(rule.stats["seconds"] for rule in rules)
    print(
        f"{args.items} items x {len(RULES)} rules: {total:.2f} s in all "
        f"({matching:.2f} s matching, {writing[0]:.2f} s in predictions_replace), "
        f"{written} pre-labels"
    )
    for rule in rules:
        stats = rule.stats
        print(
            f"  {rule.name:15} coverage {stats['coverage']:.3f} overlaps {stats['overlaps']:.3f} "
            f"conflicts {stats['conflicts']:.3f} timeouts {stats['timeouts']} "
            f"matching {stats['seconds']:.2f} s"
        )
    print(f"  predictions stored: {Prediction.objects.filter(project=project).count()}")


if __name__ == "__main__":
    main()
