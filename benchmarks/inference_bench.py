"""Time Dawid-Skene on synthetic crowd labels (default: 1,000,000 labels, 5 classes).

100,000 items x 10 labels each from 2,000 workers; 10% of the workers are spammers answering
uniformly at random, the others are right with a per-worker probability in [0.55, 0.95] and
otherwise pick a wrong class at random. Seeded; no database needed:

    .venv/bin/python benchmarks/inference_bench.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality.inference import dawid_skene, expected_accuracy, majority_vote  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthesise(
    *, n_items: int, per_item: int, n_workers: int, n_classes: int, spam: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (items, workers, labels, truth) for the synthetic crowd."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    accuracy = rng.uniform(0.55, 0.95, n_workers)
    spammers = rng.permutation(n_workers)[: int(round(spam * n_workers))]
    accuracy[spammers] = 1.0 / n_classes  # uniform over all classes
    items = np.repeat(np.arange(n_items), per_item)
    # Distinct workers per item: a random start and a random stride coprime with n_workers.
    strides = np.arange(1, n_workers)
    strides = strides[np.gcd(strides, n_workers) == 1] if n_workers > 1 else np.array([1])
    start = rng.integers(0, n_workers, n_items)[:, None]
    stride = rng.choice(strides, n_items)[:, None]
    workers = ((start + stride * np.arange(per_item)) % n_workers).ravel()
    true_of_label = truth[items]
    right = rng.random(items.size) < accuracy[workers]
    wrong = (true_of_label + rng.integers(1, n_classes, items.size)) % n_classes
    labels = np.where(right, true_of_label, wrong)
    is_spam = np.zeros(n_workers, dtype=bool)
    is_spam[spammers] = True
    spam_rows = is_spam[workers]
    labels[spam_rows] = rng.integers(0, n_classes, int(spam_rows.sum()))
    return items, workers, labels, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--per-item", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2_000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--spam", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-iter", type=int, default=100)
    args = parser.parse_args()

    items, workers, labels, truth = synthesise(
        n_items=args.items,
        per_item=args.per_item,
        n_workers=args.workers,
        n_classes=args.classes,
        spam=args.spam,
        seed=args.seed,
    )
    rss_data = peak_rss_mib()
    sizes = {"n_items": args.items, "n_workers": args.workers, "n_classes": args.classes}
    everything = np.arange(args.items)

    started = time.perf_counter()
    mv = majority_vote(items, workers, labels, **sizes)
    mv_seconds = time.perf_counter() - started

    started = time.perf_counter()
    ds = dawid_skene(items, workers, labels, **sizes, max_iter=args.max_iter)
    ds_seconds = time.perf_counter() - started

    print(f"labels: {labels.size:,}  items: {args.items:,}  workers: {args.workers:,}")
    print(f"majority_vote: {mv_seconds:.2f} s, expected accuracy ", end="")
    print(f"{expected_accuracy(mv.posteriors, everything, truth):.4f}")
    print(
        f"dawid_skene: {ds_seconds:.2f} s, {ds.iterations} iterations "
        f"(converged: {ds.converged}), {ds_seconds / ds.iterations * 1000:.0f} ms/iteration, "
        f"accuracy {(ds.labels == truth).mean():.4f}"
    )
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (after synthesis: {rss_data:.0f} MiB)")


if __name__ == "__main__":
    main()
