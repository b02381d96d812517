"""Gold statistics per worker: accuracy intervals, per-class recall, confusion and trend.

Pure NumPy/SciPy over parallel arrays with one row per gold answer (worker index, the worker's
answer as a class index, the gold class index, correctness, time or sequence). No Django.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from quality.agreement import epoch_seconds, time_buckets


def _array(values: Any, dtype: type) -> np.ndarray:
    return np.asarray(values, dtype=dtype).ravel()


def _same_length(*arrays: np.ndarray) -> None:
    if len({a.size for a in arrays}) > 1:
        raise ValueError("gold answer arrays must have the same length")


def _in_range(values: np.ndarray, size: int, name: str) -> None:
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{name} index out of range 0..{size - 1}")


def wilson_interval(
    correct: Any, total: Any, *, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for `correct` successes out of `total` (arrays broadcast).

    Same as statsmodels' proportion_confint(method="wilson"), clipped to [0, 1] (exactly 0 with
    none correct, 1 with all correct); NaN where total == 0.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1")
    correct = np.asarray(correct, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    z = stats.norm.isf((1.0 - level) / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = correct / total
        denominator = 1.0 + z * z / total
        centre = (share + z * z / (2.0 * total)) / denominator
        spread = z * np.sqrt(share * (1.0 - share) / total + z * z / (4.0 * total * total))
        spread /= denominator
    empty = total <= 0
    # Exact bounds at 0 and 1 correct: the formula lands a rounding error away from them.
    low = np.where(correct <= 0, 0.0, np.clip(centre - spread, 0.0, 1.0))
    high = np.where(correct >= total, 1.0, np.clip(centre + spread, 0.0, 1.0))
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def confusion_matrix(label_idx: Any, gold_idx: Any, *, n_classes: int) -> np.ndarray:
    """Counts of answers against gold: rows are the gold class, columns the answer given."""
    answers, gold = _array(label_idx, np.int64), _array(gold_idx, np.int64)
    _same_length(answers, gold)
    _in_range(answers, n_classes, "label")
    _in_range(gold, n_classes, "gold")
    cells = np.bincount(gold * n_classes + answers, minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes)


def class_recall(
    worker_idx: Any, label_idx: Any, gold_idx: Any, *, n_workers: int, n_classes: int
) -> np.ndarray:
    """Per worker × gold class: the share of that class's gold the worker answered correctly.

    NaN where the worker saw no gold of the class.
    """
    workers = _array(worker_idx, np.int64)
    answers, gold = _array(label_idx, np.int64), _array(gold_idx, np.int64)
    _same_length(workers, answers, gold)
    _in_range(workers, n_workers, "worker")
    _in_range(gold, n_classes, "gold")
    cell = workers * n_classes + gold
    size = n_workers * n_classes
    seen = np.bincount(cell, minlength=size).astype(np.float64)
    right = np.bincount(cell, weights=(answers == gold).astype(np.float64), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(seen > 0, right / seen, np.nan)
    return recall.reshape(n_workers, n_classes)


def accuracy_trend(correct: Any, timestamps: Any, *, buckets: int = 12) -> list[dict[str, Any]]:
    """Gold accuracy in consecutive time buckets of equal size, each with a Wilson interval.

    `timestamps` are epoch seconds (or datetime64); "start"/"end" are the first and last
    answer time of the bucket, "n" its number of gold answers.
    """
    hits = _array(correct, np.float64)
    stamps = epoch_seconds(timestamps)
    _same_length(hits, stamps)
    trend = []
    for part in time_buckets(stamps, buckets):
        right = hits[part].sum()
        low, high = wilson_interval(right, part.size)
        trend.append(
            {
                "start": float(stamps[part].min()),
                "end": float(stamps[part].max()),
                "n": int(part.size),
                "accuracy": float(right / part.size),
                "low": float(low),
                "high": float(high),
            }
        )
    return trend


def worker_recent_accuracy(
    worker_idx: Any, correct: Any, order: Any, *, n_workers: int, window: int = 20
) -> np.ndarray:
    """Accuracy on each worker's last `window` gold answers by `order`; NaN with no gold.

    `order` is any sortable key (time or sequence number); on ties the later input row counts
    as the more recent. Compared
    with the worker's overall gold accuracy, this is the signal that their quality has moved.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    workers = _array(worker_idx, np.int64)
    hits = _array(correct, np.float64)
    key = np.asarray(order).ravel()
    _same_length(workers, hits, key)
    _in_range(workers, n_workers, "worker")
    # By worker, then newest first (ties: later input first), so rank 0 is the latest answer.
    _, order_rank = np.unique(key, return_inverse=True)
    sequence = np.lexsort((-np.arange(key.size), -order_rank.ravel(), workers))
    sorted_workers = workers[sequence]
    starts = np.searchsorted(sorted_workers, np.arange(n_workers))
    rank = np.arange(sorted_workers.size) - starts[sorted_workers]
    recent = sequence[rank < window]
    seen = np.bincount(workers[recent], minlength=n_workers).astype(np.float64)
    right = np.bincount(workers[recent], weights=hits[recent], minlength=n_workers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen > 0, right / seen, np.nan)
