"""Spam detection: what the default rules flag on the shared datasets, and the 1M-vote timing.

Per dataset (mean of 5 seeds): the detector gets 10% of the gold items as known answers and
Dawid-Skene's consensus (fitted with that gold); the flagged workers' and the other workers'
accuracy is measured on the other 90% of the gold, and so is consensus accuracy (Dawid-Skene
and majority vote) with and without the flagged workers' labels. Items and rows are shuffled
first: the files have no submission times and their row order follows item ids (which leak gold).

Then every signal is timed on a synthetic crowd of 100,000 items x 10 votes from 2,000 workers
(5 classes, 10% random spammers) with planted cheats: too-fast workers, straight-liners, cyclers,
bursts, accounts sharing a device and copying pairs. No database needed:

    .venv/bin/python benchmarks/spam_detection.py [--seeds 5] [--skip-datasets] [--skip-timing]
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from inference_bench import synthesise  # noqa: E402

from quality.inference import (  # noqa: E402
    DEFAULT_METHOD,
    dawid_skene,
    expected_accuracy,
    infer,
    majority_vote,
)
from quality.spam import DEFAULT_RULES, rule_label, rules_evaluate, spam_signals  # noqa: E402

CROWD = ROOT.parent / "shared" / "datasets" / "crowd"
DATASETS = ["bluebirds", "rte", "product", "dog", "web", "adult", "ms"]


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(name: str) -> dict:
    """Index arrays; rows and item keys in a seeded random order (never the ids' order)."""
    with (CROWD / name / "labels.csv").open(newline="") as handle:
        rows = [(r["item"], r["worker"], r["label"]) for r in csv.DictReader(handle)]
    with (CROWD / name / "gold.csv").open(newline="") as handle:
        gold = [(r["item"], r["label"]) for r in csv.DictReader(handle)]
    rng = np.random.default_rng(2024)
    rows = [rows[j] for j in rng.permutation(len(rows))]
    names = sorted({r[0] for r in rows})
    item_of = dict(zip(names, rng.permutation(len(names)).tolist(), strict=True))
    workers: dict[str, int] = {}
    classes = {c: i for i, c in enumerate(sorted({r[2] for r in rows} | {g[1] for g in gold}))}
    gold_of = np.full(len(names), -1)
    for item, label in gold:
        gold_of[item_of[item]] = classes[label]
    return {
        "items": np.array([item_of[r[0]] for r in rows]),
        "workers": np.array([workers.setdefault(r[1], len(workers)) for r in rows]),
        "labels": np.array([classes[r[2]] for r in rows]),
        "gold": gold_of,
        "sizes": {"n_items": len(names), "n_workers": len(workers), "n_classes": len(classes)},
    }


def default(*args: Any, **kwargs: Any) -> Any:
    """The consensus a project runs unless its owner picks another method."""
    return infer(DEFAULT_METHOD, *args, **kwargs)


def one_run(data: dict, seed: int) -> dict:
    items, workers, labels, gold = data["items"], data["workers"], data["labels"], data["gold"]
    sizes = data["sizes"]
    gold_items = np.flatnonzero(gold >= 0)
    rng = np.random.default_rng(seed)
    known = rng.choice(gold_items, max(1, round(0.1 * gold_items.size)), replace=False)
    held = np.setdiff1d(gold_items, known)
    given = np.full(sizes["n_items"], -1)
    given[known] = gold[known]
    fixed = (known, gold[known])
    fit = default(items, workers, labels, **sizes, gold=fixed)
    sig = spam_signals(
        item_idx=items,
        worker_idx=workers,
        label_idx=labels,
        **sizes,
        consensus=fit.labels,
        gold_label_idx=given,
        reliability=fit.worker_reliability,
    )
    hits = rules_evaluate(sig, DEFAULT_RULES)
    excluding = np.zeros(sizes["n_workers"], dtype=bool)
    excluding[[hit.worker for hit in hits if hit.rule.action in ("exclude", "block")]] = True
    flagged = np.zeros(sizes["n_workers"], dtype=bool)
    flagged[[hit.worker for hit in hits]] = True
    keep = ~flagged[workers]
    on_held = np.isin(items, held)
    right = labels == gold[items]

    def accuracy(method, mask):
        result = method(items[mask], workers[mask], labels[mask], **sizes, gold=fixed)
        return expected_accuracy(result.posteriors, held, gold[held])

    everyone = np.ones_like(keep)
    return {
        "flagged": int(flagged.sum()),
        "votes": float((~keep).mean()),
        "flagged_acc": float(right[on_held & ~keep].mean()) if (on_held & ~keep).any() else np.nan,
        "rest_acc": float(right[on_held & keep].mean()),
        "ds_with": expected_accuracy(fit.posteriors, held, gold[held]),
        "ds_without": accuracy(default, keep),
        "ds_without_excluded": accuracy(default, ~excluding[workers]),
        "mv_with": accuracy(majority_vote, everyone),
        "mv_without": accuracy(majority_vote, keep),
        "rules": Counter(hit.rule.signal for hit in hits),
    }


def datasets_table(seeds: int) -> None:
    print(f"Default rules (10% of gold known; accuracies on the other 90%; mean of {seeds} seeds):")
    for rule in DEFAULT_RULES:
        print(f"  - {rule_label(rule)}")
    header = (
        "| dataset | workers | flagged | their votes | gold acc flagged | gold acc rest "
        f"| {DEFAULT_METHOD} with | without flagged | without excluded "
        "| MV with | MV without | fired (workers, summed over seeds) |"
    )
    print()
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in DATASETS:
        data = load(name)
        runs = [one_run(data, seed) for seed in range(seeds)]
        mean = {key: np.nanmean([run[key] for run in runs]) for key in runs[0] if key != "rules"}
        fired = sum((run["rules"] for run in runs), Counter())
        print(
            f"| {name} | {data['sizes']['n_workers']} | {mean['flagged']:.1f} "
            f"| {mean['votes']:.1%} | {mean['flagged_acc']:.3f} | {mean['rest_acc']:.3f} "
            f"| {mean['ds_with']:.4f} | {mean['ds_without']:.4f} "
            f"| {mean['ds_without_excluded']:.4f} "
            f"| {mean['mv_with']:.4f} | {mean['mv_without']:.4f} "
            f"| {', '.join(f'{k} {v}' for k, v in fired.most_common())} |"
        )


def planted_crowd(seed: int = 42) -> tuple[dict, dict[str, np.ndarray]]:
    """The 1M-vote crowd of inference_bench plus timing, devices and planted cheats.

    Copiers are 20 workers who re-answer 200 of another worker's items with that worker's
    labels (4,000 extra votes); the other cheats rewrite existing workers' votes.
    """
    n_items, n_workers, k = 100_000, 2_000, 5
    items, workers, labels, _ = synthesise(
        n_items=n_items, per_item=10, n_workers=n_workers, n_classes=k, spam=0.10, seed=seed
    )
    rng = np.random.default_rng(seed)
    cheats = rng.permutation(n_workers)[:100].reshape(5, 20)
    plant = dict(zip(["fast", "liner", "cycler", "burst", "device"], cheats, strict=True))
    copiers, sources = rng.permutation(n_workers)[:40].reshape(2, 20)
    extra_items = [rng.choice(items[workers == s], 200, replace=False) for s in sources]
    extra_workers = np.repeat(copiers, 200)
    source_labels = {
        s: dict(zip(items[workers == s], labels[workers == s], strict=False)) for s in sources
    }
    extra_labels = [
        [source_labels[s][i] for i in chosen]
        for s, chosen in zip(sources, extra_items, strict=True)
    ]
    items = np.concatenate([items, *extra_items])
    workers = np.concatenate([workers, extra_workers])
    labels = np.concatenate([labels, np.concatenate(extra_labels)])
    # Each worker's votes in a random order, one every ~15 s; 10 s on each item.
    order = rng.permutation(items.size)
    items, workers, labels = items[order], workers[order], labels[order]
    rank = np.empty(items.size)
    by_worker = np.argsort(workers, kind="stable")
    counts = np.bincount(workers, minlength=n_workers)
    rank[by_worker] = np.arange(items.size) - np.repeat(np.cumsum(counts) - counts, counts)
    times = 1e6 * workers + 15.0 * rank + rng.uniform(0, 5, items.size)
    duration = rng.lognormal(np.log(10_000), 0.4, items.size)
    keys = workers.copy()
    is_ = {name: np.isin(workers, group) for name, group in plant.items()}
    duration[is_["fast"]] /= 10
    labels[is_["liner"]] = 0
    labels[is_["cycler"]] = (rank[is_["cycler"]] % k).astype(labels.dtype)
    bursty = is_["burst"] & (rank % 4 != 0)
    times[bursty] = (
        1e6 * workers[bursty] + 15.0 * (rank[bursty] // 4) * 4 + 0.2 * (rank[bursty] % 4)
    )
    keys[is_["device"]] = (
        n_workers + np.searchsorted(np.sort(plant["device"]), workers[is_["device"]]) // 4
    )
    plant["collusion"] = np.concatenate([copiers, sources])  # both accounts of each pair
    data = {
        "items": items,
        "workers": workers,
        "labels": labels,
        "duration": duration,
        "times": times,
        "keys": keys,
        "sizes": {"n_items": n_items, "n_workers": n_workers, "n_classes": k},
    }
    return data, plant


def timing(repeats: int) -> None:
    data, plant = planted_crowd()
    sizes = data["sizes"]
    consensus = dawid_skene(data["items"], data["workers"], data["labels"], **sizes).labels
    gold = np.full(sizes["n_items"], -1)
    gold[:10_000] = consensus[:10_000]  # stand-in gold: the engine passes the project's
    kwargs = {
        "item_idx": data["items"],
        "worker_idx": data["workers"],
        "label_idx": data["labels"],
        **sizes,
        "consensus": consensus,
        "gold_label_idx": gold,
        "duration_ms": data["duration"],
        "submitted_at": data["times"],
        "client_key": data["keys"],
    }
    spam_signals(**kwargs)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        signals = spam_signals(**kwargs)
        seconds.append(time.perf_counter() - start)
    hits = rules_evaluate(signals, DEFAULT_RULES)
    print()
    print(
        f"Timing: {data['items'].size:,} votes, {sizes['n_workers']:,} workers, "
        f"{sizes['n_items']:,} items, {sizes['n_classes']} classes (one core):"
    )
    print(
        f"  spam_signals, all signals incl. collusion: median {np.median(seconds):.2f} s "
        f"of {repeats} (min {min(seconds):.2f} s); peak RSS {peak_rss_mib():.0f} MiB"
    )
    print("  planted cheats caught by the default rules (caught / planted; collusion counts both")
    print("  accounts of each copying pair):")
    flagged_by: dict[str, set[int]] = {}
    for hit in hits:
        flagged_by.setdefault(hit.rule.signal, set()).add(hit.worker)
    rule_of = {
        "fast": "speed_ratio",
        "liner": "straightlining",
        "cycler": "repeated_pattern",
        "burst": "burst",
        "device": "shared_client",
        "collusion": "collusion",
    }
    planted = set(np.concatenate(list(plant.values())).tolist())
    for name, group in plant.items():
        rule = rule_of[name]
        caught = len(flagged_by.get(rule, set()) & set(group.tolist()))
        false = len(flagged_by.get(rule, set()) - planted)
        print(f"    {name:9s} {caught:2d} / {len(group)}  ({rule}; {false} others hit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-datasets", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    if not args.skip_datasets:
        datasets_table(args.seeds)
    if not args.skip_timing:
        timing(args.repeats)


if __name__ == "__main__":
    main()
