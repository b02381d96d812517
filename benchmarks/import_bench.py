"""Import speed: 100,000 JSONL rows through annotation.imports.import_run on PostgreSQL.

Usage (from the repository root; the database must exist and be migrated):

    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE assay_bench_import'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_bench_import \
        .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/assay_bench_import \
        .venv/bin/python benchmarks/import_bench.py [--rows 100000] [--runs 3]

Each run imports a freshly generated file into a new project and times import_run alone
(validation pass + COPY pass); the file upload and the clean-up are not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
MEDIA = tempfile.mkdtemp(prefix="assay-import-bench-")
os.environ["ASSAY_MEDIA_ROOT"] = MEDIA

OPENERS = [
    "Honestly,", "After two weeks,", "To be fair,", "I have to say", "Overall,", "Sadly,",
    "My partner thinks", "For the price,", "Out of the box,", "Three months in,", "As a gift,",
]  # fmt: skip
PRODUCTS = [
    "the kettle", "this blender", "the headphones", "the backpack", "this desk lamp",
    "the running shoes", "the phone case", "this coffee grinder", "the tent", "the keyboard",
    "the vacuum", "this paperback", "the charger", "the winter coat", "the water bottle",
]  # fmt: skip
VERDICTS = [
    "works better than expected", "stopped working after a week", "is exactly as described",
    "feels cheap and flimsy", "arrived scratched", "is comfortable for long days",
    "is far too loud", "was worth every penny", "does the job, nothing more",
    "broke on the first use", "looks great on the shelf", "heats up quickly",
]  # fmt: skip
DETAILS = [
    "Delivery took {n} days.", "Customer service answered within {n} hours.",
    "The battery lasts about {n} hours.", "I returned {n} of them.", "It weighs {n} grams.",
    "We have used it {n} times so far.", "The manual has {n} pages of safety warnings.",
]  # fmt: skip
CLOSERS = [
    "Would buy again.", "Not recommended.", "Five stars from me.", "Avoid.", "It's fine.",
    "Keep the receipt.", "My kids love it.", "Ask me again in a year.", "",
]  # fmt: skip
LABELS = [
    {"value": "positive", "hotkey": "1"},
    {"value": "negative", "hotkey": "2"},
    {"value": "neutral", "hotkey": "3"},
]


def review(rng: random.Random, n: int) -> str:
    parts = [f"{rng.choice(OPENERS)} {rng.choice(PRODUCTS)} {rng.choice(VERDICTS)}."]
    for _ in range(rng.randint(0, 4)):
        parts.append(rng.choice(DETAILS).format(n=rng.randint(1, 400)))
    parts.append(rng.choice(CLOSERS))
    parts.append(f"(order #{n:07d})")  # real exports carry ids; keeps texts unique
    return " ".join(p for p in parts if p)


def write_rows(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for n in range(rows):
            row = {
                "text": review(rng, n),
                "source": rng.choice(["shop", "app", "email", "survey"]),
                "stars": rng.randint(1, 5),
                "lang": "en",
            }
            if rng.random() < 0.05:
                row["gold"] = rng.choice(LABELS)["value"]
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the projects afterwards")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the COPY path is what is measured).")

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files import File
    from django.db import connection

    from annotation.imports import import_run
    from annotation.models import ImportJob, Item
    from annotation.services import project_create

    user, _ = get_user_model().objects.get_or_create(username="import-bench")
    timings = []
    for run in range(1, args.runs + 1):
        project = project_create(
            user=user, name=f"Import bench {run}", labels=LABELS, overlap=3, gold_ratio=0.05
        )
        path = Path(MEDIA) / f"bench-{run}.jsonl"
        write_rows(path, args.rows, seed=run)
        job = ImportJob(project=project, created_by=user, original_name=path.name, format="jsonl")
        with path.open("rb") as handle:
            job.file.save(path.name, File(handle), save=True)

        started = time.perf_counter()
        job = import_run(job=job)
        seconds = time.perf_counter() - started

        items = project.items.count()
        if job.status != ImportJob.Status.SUCCEEDED:
            sys.exit(f"run {run}: import failed: {job.errors[:3]}")
        timings.append(seconds)
        print(
            f"run {run}: {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s, "
            f"{items:,} items ({job.duplicate_count} duplicates, "
            f"{project.items.filter(is_gold=True).count():,} gold), "
            f"file {path.stat().st_size / 1e6:.1f} MB"
        )
        if not args.keep:
            project.delete()
            with connection.cursor() as cursor:  # leave no dead rows for the next run
                cursor.execute(f"VACUUM ANALYZE {Item._meta.db_table}")
    shutil.rmtree(MEDIA, ignore_errors=True)
    median = statistics.median(timings)
    print(f"median of {len(timings)}: {median:.2f} s, {args.rows / median:,.0f} rows/s")


if __name__ == "__main__":
    main()
