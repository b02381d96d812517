"""Show the saving of adaptive overlap: labels needed to match a fixed overlap's gold accuracy.

Each shared crowd dataset is replayed in the order its labels were given (labels.csv row order).
Fixed overlap k keeps the first k labels of every item. Adaptive overlap starts every item at
`--start` labels and adds the item's next label while the consensus confidence is below a
threshold, up to the maximum overlap; a grid of thresholds traces its labels/accuracy curve.
For each fixed k the script reports the fewest labels any adaptive run needed to reach at least
the same gold accuracy, and the ratio labels_adaptive / labels_fixed (below 1 is a saving).
Items are re-keyed to integers in first-seen order: no method reads item ids. No database:

    .venv/bin/python benchmarks/adaptive_overlap.py [--method ds] [--datasets rte dog]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality.adaptive import (  # noqa: E402
    _method,
    fixed_overlap_mask,
    overlap_accuracy,
    replay_adaptive_overlap,
)

CROWD = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "crowd"
DATASETS = ["bluebirds", "rte", "dog", "web", "product", "adult", "ms"]
# Dawid-Skene posteriors on few labels are overconfident, so the grid reaches far toward 1.
THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1 - 1e-4, 1 - 1e-5, 1 - 1e-6, 1 - 1e-7)


def load(root: Path, name: str) -> dict[str, Any]:
    """Dataset as index arrays in file order; items and workers keyed in first-seen order."""
    with (root / name / "labels.csv").open(newline="") as handle:
        rows = [(r["item"], r["worker"], r["label"]) for r in csv.DictReader(handle)]
    with (root / name / "gold.csv").open(newline="") as handle:
        gold = [(r["item"], r["label"]) for r in csv.DictReader(handle)]
    items: dict[str, int] = {}
    workers: dict[str, int] = {}
    classes = {c: i for i, c in enumerate(sorted({r[2] for r in rows} | {g[1] for g in gold}))}
    return {
        "items": np.array([items.setdefault(r[0], len(items)) for r in rows]),
        "workers": np.array([workers.setdefault(r[1], len(workers)) for r in rows]),
        "labels": np.array([classes[r[2]] for r in rows]),
        "gold_items": np.array([items[g[0]] for g in gold]),
        "gold_labels": np.array([classes[g[1]] for g in gold]),
        "sizes": {"n_items": len(items), "n_workers": len(workers), "n_classes": len(classes)},
    }


def fixed_runs(data: dict[str, Any], *, method: str, max_overlap: int) -> list[dict[str, Any]]:
    """Fixed overlap k = 1..max_overlap: labels used and gold accuracy."""
    fit = _method(method)
    runs = []
    for k in range(1, max_overlap + 1):
        mask = fixed_overlap_mask(data["items"], n_items=data["sizes"]["n_items"], overlap=k)
        result = fit(
            data["items"][mask], data["workers"][mask], data["labels"][mask], **data["sizes"]
        )
        accuracy = overlap_accuracy(result.labels, data["gold_items"], data["gold_labels"])
        runs.append({"k": k, "labels": int(mask.sum()), "accuracy": accuracy})
    return runs


def adaptive_runs(
    data: dict[str, Any], *, method: str, starts: list[int], max_overlap: int
) -> list[dict[str, Any]]:
    """Adaptive overlap for every start overlap and threshold of the grid."""
    runs = []
    for start in starts:
        if start > max_overlap:
            continue
        for threshold in THRESHOLDS:
            replay = replay_adaptive_overlap(
                data["items"],
                data["workers"],
                data["labels"],
                **data["sizes"],
                start_overlap=start,
                threshold=threshold,
                max_overlap=max_overlap,
                method=method,
            )
            accuracy = overlap_accuracy(
                replay["predictions"], data["gold_items"], data["gold_labels"]
            )
            runs.append(
                {
                    "start": start,
                    "threshold": threshold,
                    "labels": replay["labels_used"],
                    "accuracy": accuracy,
                }
            )
    return runs


def saving(fixed: dict[str, Any], adaptive: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest adaptive run at least as accurate as `fixed` (None if none is)."""
    matching = [run for run in adaptive if run["accuracy"] >= fixed["accuracy"] - 1e-12]
    return min(matching, key=lambda run: run["labels"]) if matching else None


def report(name: str, data: dict[str, Any], args: argparse.Namespace) -> list[str]:
    per_item = np.bincount(data["items"], minlength=data["sizes"]["n_items"])
    max_overlap = int(min(args.max_overlap, np.percentile(per_item, 90)))
    fixed = fixed_runs(data, method=args.method, max_overlap=max_overlap)
    adaptive = adaptive_runs(data, method=args.method, starts=args.start, max_overlap=max_overlap)
    lines = []
    for run in fixed[1:]:  # k = 1 leaves nothing to adapt
        best = saving(run, adaptive)
        if best is None:
            cells = "not reached | – | –"
        else:
            ratio = best["labels"] / run["labels"]
            cells = (
                f"{best['labels']:,} ({best['accuracy']:.3f}) | {ratio:.2f}"
                f" | start {best['start']}, threshold {best['threshold']}"
            )
        lines.append(
            f"| {name} | {run['k']} | {run['labels']:,} | {run['accuracy']:.3f} | {cells} |"
        )
    lines.append(_one_setting(name, data, fixed, args, max_overlap))
    return lines


def _one_setting(
    name: str,
    data: dict[str, Any],
    fixed: list[dict[str, Any]],
    args: argparse.Namespace,
    max_overlap: int,
) -> str:
    """The reverse view for one setting chosen in advance (no selection on gold)."""
    start, threshold = args.setting
    replay = replay_adaptive_overlap(
        data["items"],
        data["workers"],
        data["labels"],
        **data["sizes"],
        start_overlap=int(start),
        threshold=threshold,
        max_overlap=max_overlap,
        method=args.method,
    )
    accuracy = overlap_accuracy(replay["predictions"], data["gold_items"], data["gold_labels"])
    match = next((run for run in fixed if run["accuracy"] >= accuracy - 1e-12), None)
    needs = (
        f"fixed k={match['k']} needs {match['labels']:,} ({match['accuracy']:.3f}), "
        f"ratio {replay['labels_used'] / match['labels']:.2f}"
        if match
        else f"no fixed k <= {max_overlap} reaches it"
    )
    return (
        f"| {name} | setting start {int(start)}, threshold {threshold} | "
        f"{replay['labels_used']:,} labels, accuracy {accuracy:.3f}; {needs} |||||"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=CROWD)
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    parser.add_argument("--method", default="ds")
    parser.add_argument("--start", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--max-overlap", type=int, default=10)
    parser.add_argument(
        "--setting",
        type=float,
        nargs=2,
        default=[3, 0.999],
        metavar=("START", "THRESHOLD"),
        help="one adaptive setting fixed in advance, reported against every fixed k",
    )
    args = parser.parse_args()
    print(f"method={args.method}; adaptive starts {args.start}; thresholds {list(THRESHOLDS)}")
    print(
        "| dataset | fixed k | labels fixed | accuracy fixed | labels adaptive (accuracy) "
        "| ratio | adaptive setting |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in args.datasets:
        began = time.perf_counter()
        for line in report(name, load(args.root, name), args):
            print(line)
        print(f"<!-- {name}: {time.perf_counter() - began:.1f} s -->", file=sys.stderr)


if __name__ == "__main__":
    main()
