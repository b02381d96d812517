"""Adaptive gold and adaptive overlap: pure NumPy policies the quality engine applies.

Nothing here touches the database. The engine passes per-worker or per-item arrays and writes
back what these functions decide:

- `gold_rates`: how often each worker is shown a gold question (high while onboarding, falling
  toward a floor as their reliability is established, back up when their accuracy drops).
- `overlap_decisions`: which items get one more annotator (doubtful after their overlap was
  reached) and which go to expert review (still doubtful at the maximum overlap).
- `reliable_workers`: whom doubtful items are offered to first.
- `gold_pool_status`: whether the unseen gold left will last the active workforce.
- `replay_adaptive_overlap`: replays a labelled dataset in its own order to measure what adaptive
  overlap saves against a fixed overlap (see benchmarks/adaptive_overlap.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from quality import inference

__all__ = [
    "GoldPolicy",
    "fixed_overlap_mask",
    "gold_pool_status",
    "gold_rates",
    "label_positions",
    "overlap_decisions",
    "reliable_workers",
    "replay_adaptive_overlap",
    "wilson_interval",
]

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class GoldPolicy:
    """How a worker's gold rate moves with the evidence on them.

    `onboarding_rate` applies to the first `onboarding_count` gold answers and whenever the
    worker's gold accuracy is below `accuracy_bar`; once the Wilson 95% lower bound of their
    accuracy clears the bar the rate decays toward `floor` as onboarding_count / gold_seen.
    """

    onboarding_rate: float = 0.5
    floor: float = 0.05
    onboarding_count: int = 8
    accuracy_bar: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= self.onboarding_rate < 1.0:
            raise ValueError("need 0 <= floor <= onboarding_rate < 1")
        if self.onboarding_count < 1:
            raise ValueError("onboarding_count must be >= 1")
        if not 0.0 < self.accuracy_bar <= 1.0:
            raise ValueError("accuracy_bar must be in (0, 1]")


def wilson_interval(
    successes: np.ndarray, trials: np.ndarray, *, z: float = Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval per entry; (0, 1) where there are no trials."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    safe = np.where(n > 0, n, 1.0)
    p = k / safe
    z2 = z * z
    centre = (p + z2 / (2 * safe)) / (1 + z2 / safe)
    half = z * np.sqrt(p * (1 - p) / safe + z2 / (4 * safe * safe)) / (1 + z2 / safe)
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def gold_rates(
    *, gold_seen: np.ndarray, gold_correct: np.ndarray, policy: GoldPolicy
) -> np.ndarray:
    """Per-worker share of served items that should be gold questions.

    Three regimes, per worker:
    - onboarding (fewer than `onboarding_count` gold answers) or failing (accuracy below the
      bar): `onboarding_rate`;
    - established (Wilson lower bound >= bar): floor + (onboarding - floor) * count / seen,
      so more evidence means less gold;
    - probation (accuracy above the bar, but not yet proven): the same decay under a square
      root, slower, and never below the established rate for the same evidence.
    Pass a recent window of gold answers (e.g. the last 50) as `gold_seen`/`gold_correct` to
    make the rate react quickly when a worker's accuracy drops.
    """
    seen = np.asarray(gold_seen, dtype=np.float64)
    correct = np.asarray(gold_correct, dtype=np.float64)
    if seen.shape != correct.shape:
        raise ValueError("gold_seen and gold_correct must have the same shape")
    if np.any(correct > seen) or np.any(correct < 0):
        raise ValueError("gold_correct must be between 0 and gold_seen")
    share = np.clip(policy.onboarding_count / np.where(seen > 0, seen, 1.0), 0.0, 1.0)
    accuracy = correct / np.where(seen > 0, seen, 1.0)
    low, _ = wilson_interval(correct, seen)
    onboarding = (seen < policy.onboarding_count) | (accuracy < policy.accuracy_bar)
    established = ~onboarding & (low >= policy.accuracy_bar)
    doubt = np.where(onboarding, 1.0, np.where(established, share, np.sqrt(share)))
    return policy.floor + (policy.onboarding_rate - policy.floor) * doubt


def overlap_decisions(
    *,
    confidence: np.ndarray,
    annotation_count: np.ndarray,
    target: np.ndarray,
    threshold: float,
    max_overlap: int,
    review_enabled: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (new_target, doubtful, review) for items given their consensus confidence.

    An item is decided only once it has all the annotations its target asks for. If its
    confidence is below `threshold` it is doubtful: its target goes up by one while below
    `max_overlap`; at the maximum it goes to review (when `review_enabled`). Items not yet
    scored (NaN confidence) are left alone.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    count = np.asarray(annotation_count, dtype=np.int64)
    tgt = np.asarray(target, dtype=np.int64)
    if not (conf.shape == count.shape == tgt.shape):
        raise ValueError("confidence, annotation_count and target must have the same shape")
    if max_overlap < 1:
        raise ValueError("max_overlap must be >= 1")
    reached = count >= tgt
    unsure = reached & ~np.isnan(conf) & (np.nan_to_num(conf, nan=1.0) < threshold)
    doubtful = unsure & (tgt < max_overlap)
    review = unsure & ~doubtful & bool(review_enabled)
    return np.where(doubtful, tgt + 1, tgt), doubtful, review


def reliable_workers(
    *, reliability: np.ndarray, evidence: np.ndarray, bar: float, min_evidence: int = 10
) -> np.ndarray:
    """Workers the model is sure about: reliability >= bar on at least `min_evidence` labels."""
    rel = np.asarray(reliability, dtype=np.float64)
    ev = np.asarray(evidence, dtype=np.float64)
    if rel.shape != ev.shape:
        raise ValueError("reliability and evidence must have the same shape")
    return (np.nan_to_num(rel, nan=-np.inf) >= bar) & (ev >= min_evidence)


def gold_pool_status(
    *,
    unseen_gold_per_worker: np.ndarray,
    gold_rate: np.ndarray,
    open_items_per_worker: np.ndarray,
) -> dict[str, Any]:
    """Will the gold pool last? JSON-able counts for the owner dashboard.

    A worker at gold rate r who still has N regular items to do is served about
    N * r / (1 - r) gold questions (r is the share of served items that are gold). They run
    short when that exceeds the gold they have not seen. New gold items are unseen by everyone,
    so the extra gold needed to cover every short worker is the largest single shortfall.
    """
    unseen = np.asarray(unseen_gold_per_worker, dtype=np.float64)
    rate = np.clip(np.asarray(gold_rate, dtype=np.float64), 0.0, 0.99)
    remaining = np.asarray(open_items_per_worker, dtype=np.float64)
    if not (unseen.shape == rate.shape == remaining.shape):
        raise ValueError("all per-worker arrays must have the same shape")
    active = remaining > 0
    need = np.ceil(remaining * rate / (1.0 - rate) - 1e-9)
    shortfall = np.where(active, need - unseen, 0.0)
    short = shortfall > 0
    return {
        "active_workers": int(active.sum()),
        "workers_short": int(short.sum()),
        "gold_needed": int(shortfall.max()) if short.any() else 0,
        "short": bool(short.any()),
    }


# --- Replay ------------------------------------------------------------------------------------

Method = Callable[..., inference.InferenceResult]


def _method(name: str) -> Method:
    if name not in inference.METHODS:
        raise ValueError(f"unknown method {name!r}; use one of {sorted(inference.METHODS)}")
    return lambda *args, **kwargs: inference.infer(name, *args, **kwargs)


def label_positions(items: np.ndarray, *, n_items: int) -> np.ndarray:
    """For each label, how many labels its item had before it (0 for the item's first)."""
    items = np.asarray(items, dtype=np.int64)
    order = np.argsort(items, kind="stable")
    starts = np.concatenate(([0], np.cumsum(np.bincount(items, minlength=n_items))[:-1]))
    positions = np.empty(items.size, dtype=np.int64)
    positions[order] = np.arange(items.size) - starts[items[order]]
    return positions


def fixed_overlap_mask(items: np.ndarray, *, n_items: int, overlap: int) -> np.ndarray:
    """Boolean mask of the first `overlap` labels of every item, in the given order."""
    return label_positions(items, n_items=n_items) < overlap


def replay_adaptive_overlap(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    start_overlap: int,
    threshold: float,
    max_overlap: int,
    method: str = "ds",
    gold: inference.Gold = None,
) -> dict[str, Any]:
    """Replay labels in their given order under adaptive overlap.

    Every item starts with its first `start_overlap` labels. Then, round after round, the
    method is fitted on the labels used so far and every item whose confidence is below
    `threshold` (and that has fewer than `max_overlap` labels, with more left in the data)
    takes its next label. Stops when no item takes one. Returns the number of labels used,
    the final predictions and confidence, the per-item label counts and the rounds run.
    """
    if not 1 <= start_overlap <= max_overlap:
        raise ValueError("need 1 <= start_overlap <= max_overlap")
    items = np.asarray(items, dtype=np.int64)
    workers = np.asarray(workers, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    fit = _method(method)
    positions = label_positions(items, n_items=n_items)
    available = np.minimum(np.bincount(items, minlength=n_items), max_overlap)
    used = np.minimum(available, start_overlap)
    rounds = 0
    while True:
        rounds += 1
        mask = positions < used[items]
        result = fit(
            items[mask],
            workers[mask],
            labels[mask],
            n_items=n_items,
            n_workers=n_workers,
            n_classes=n_classes,
            gold=gold,
        )
        grow = (result.confidence < threshold) & (used < available)
        if not grow.any():
            break
        used = used + grow
    return {
        "labels_used": int(used.sum()),
        "predictions": result.labels,
        "confidence": result.confidence,
        "labels_per_item": used,
        "rounds": rounds,
    }


def overlap_accuracy(
    predictions: np.ndarray, gold_items: np.ndarray, gold_labels: np.ndarray
) -> float:
    """Share of gold items whose prediction matches the gold label (NaN without gold)."""
    gold_items = np.asarray(gold_items, dtype=np.int64)
    if gold_items.size == 0:
        return math.nan
    return float(np.mean(np.asarray(predictions)[gold_items] == np.asarray(gold_labels)))
