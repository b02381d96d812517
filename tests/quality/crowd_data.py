"""The shared crowdsourced datasets with gold (../shared/datasets/crowd), for the quality tests.

Each test module re-keys items its own way (first-seen order, a seeded permutation, shuffled
rows): what they share is where the files are, the skip-or-fail rule, and reading them. Nothing
here looks at item ids beyond using them as keys.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import pytest

CROWD = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "crowd"
IN_CI = os.environ.get("CI", "").lower() == "true"
DATASETS = ["bluebirds", "rte", "product", "dog", "web", "adult", "ms"]


def need_crowd_data() -> None:
    """Skip without the datasets, except under CI=true, where they must be there."""
    if not (CROWD / "README.md").is_file():
        reason = f"shared crowd datasets not found at {CROWD}"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}: this test must run in CI.", pytrace=False)
        pytest.skip(reason)


@functools.cache
def read_rows(name: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(item, worker, label) rows in file order and (item, label) gold rows of a dataset."""
    with (CROWD / name / "labels.csv").open(newline="") as handle:
        rows = [(r["item"], r["worker"], r["label"]) for r in csv.DictReader(handle)]
    with (CROWD / name / "gold.csv").open(newline="") as handle:
        gold = [(r["item"], r["label"]) for r in csv.DictReader(handle)]
    return rows, gold
