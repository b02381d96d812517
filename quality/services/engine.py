"""The numeric half of a recompute: consensus, signals, overlap and the full-run statistics.

Everything here works on `Votes` (a project's annotations as parallel NumPy arrays, loaded by
quality.services.recompute) and returns arrays or JSON-able dicts; nothing touches the
database. The inference methods never see item ids: items are re-keyed by a seeded random
permutation before fitting (several imports order items by class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from quality import inference
from quality.adaptive import GoldPolicy, gold_pool_status, gold_rates, reliable_workers
from quality.agreement import agreement_over_time, agreement_summary
from quality.gold import (
    accuracy_trend,
    class_recall,
    confusion_matrix,
    wilson_interval,
    worker_recent_accuracy,
)
from quality.spam import WorkerSignals, spam_signals

# Gold answers per worker that the adaptive gold rate looks at (recent accuracy moves it).
GOLD_RATE_WINDOW = 50
# Gold answers per worker behind the "recent accuracy" trend figure.
GOLD_TREND_WINDOW = 20
# Labels a worker needs behind their reliability before doubtful items go to them first.
RELIABLE_MIN_EVIDENCE = 10
# Rounding of stored probabilities: a vote elsewhere nudges every posterior of an EM model by
# tiny amounts, and rewriting 100,000 rows for a change in the 6th decimal is waste.
PROBABILITY_DECIMALS = 4
BOOTSTRAP_SAMPLES = 200
TREND_BOOTSTRAP_SAMPLES = 100
TREND_BUCKETS = 12


@dataclass(frozen=True)
class Votes:
    """A project's votes (each author's latest on an item) and its items, as arrays.

    Items are all of the project's items; `voted` marks those with at least one vote (only
    they get an ItemScore). Per-item gold is -1 for a regular item and -2 for a gold item
    whose answer is missing or not a label.
    """

    labels: list[str]
    item_ids: np.ndarray  # per item: id
    worker_ids: np.ndarray  # per worker: user id (workers with votes)
    item_idx: np.ndarray  # per vote
    worker_idx: np.ndarray  # per vote
    label_idx: np.ndarray  # per vote
    duration_ms: np.ndarray  # per vote
    submitted_at: np.ndarray  # per vote: epoch seconds
    client_code: np.ndarray  # per vote: device code, -1 unknown
    gold_label_idx: np.ndarray  # per item
    gold_retired: np.ndarray  # per item: bool
    target: np.ndarray  # per item
    item_annotations: np.ndarray  # per item: Item.annotation_count (what routing counts)
    priority: np.ndarray  # per item
    reviewed: np.ndarray  # per item: the latest review decision's label index, -1 none
    annotation_max_id: int

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    @property
    def n_workers(self) -> int:
        return int(self.worker_ids.size)

    @property
    def n_classes(self) -> int:
        return max(len(self.labels), 1)

    @property
    def is_gold(self) -> np.ndarray:
        return self.gold_label_idx != -1

    @property
    def voted(self) -> np.ndarray:
        return np.bincount(self.item_idx, minlength=self.n_items) > 0


@dataclass(frozen=True)
class Consensus:
    """The model's answer per item (original item order) and per worker."""

    posteriors: np.ndarray  # n_items x n_classes
    label: np.ndarray  # per item: class index, -1 without any counted vote
    confidence: np.ndarray  # per item: posterior of `label`, 0.0 without a counted vote
    reliability: np.ndarray  # per worker: NaN when none of their labels counted
    method: str
    reason: str
    priors: np.ndarray | None
    counted: np.ndarray  # per vote: bool, the vote entered the model


def consensus_infer(votes: Votes, *, excluded: np.ndarray, method: str, seed: int) -> Consensus:
    """Fit `method` on the votes of workers not `excluded`, gold and reviews as fixed truths.

    Gold items with a valid answer and items an expert decided are clamped to that answer
    (semi-supervised); the reviewed label also overrides the output.
    """
    n_items, k = votes.n_items, votes.n_classes
    counted = ~excluded[votes.worker_idx]
    if not votes.item_idx.size:  # nothing to fit
        return Consensus(
            posteriors=np.zeros((n_items, k)),
            label=np.full(n_items, -1, dtype=np.int64),
            confidence=np.zeros(n_items),
            reliability=np.full(votes.n_workers, np.nan),
            method=method,
            reason="no annotations yet",
            priors=None,
            counted=counted,
        )
    key = np.random.default_rng(seed).permutation(n_items)  # original index -> model index
    fixed = np.where(votes.reviewed >= 0, votes.reviewed, votes.gold_label_idx)
    fixed_items = np.flatnonzero(fixed >= 0)
    result = _infer(
        method,
        key[votes.item_idx[counted]],
        votes.worker_idx[counted],
        votes.label_idx[counted],
        n_items=n_items,
        n_workers=votes.n_workers,
        n_classes=k,
        gold=(key[fixed_items], fixed[fixed_items]) if fixed_items.size else None,
    )
    posteriors = np.asarray(result.posteriors, dtype=np.float64)[key].copy()
    posteriors[fixed_items] = 0.0
    posteriors[fixed_items, fixed[fixed_items]] = 1.0
    label = posteriors.argmax(axis=1) if n_items else np.empty(0, dtype=np.int64)
    confidence = posteriors[np.arange(n_items), label] if n_items else np.empty(0)
    has_votes = np.bincount(votes.item_idx[counted], minlength=n_items) > 0
    unknown = ~has_votes & (fixed < 0)
    label = np.where(unknown, -1, label)
    confidence = np.where(unknown, 0.0, confidence)
    reliability = _reliability(result, votes, counted)
    used, reason = _method_used(result, method)
    return Consensus(
        posteriors=posteriors,
        label=label,
        confidence=confidence,
        reliability=reliability,
        method=used,
        reason=reason,
        priors=None if result.priors is None else np.asarray(result.priors, dtype=np.float64),
        counted=counted,
    )


def _infer(method: str, *args: Any, **kwargs: Any) -> inference.InferenceResult:
    return inference.infer(method, *args, seed=0, **kwargs)


def _reliability(
    result: inference.InferenceResult, votes: Votes, counted: np.ndarray
) -> np.ndarray:
    """Every method's per-worker probability of a right answer; NaN for excluded workers."""
    labelled = np.bincount(votes.worker_idx[counted], minlength=votes.n_workers) > 0
    return np.where(labelled, np.asarray(result.worker_reliability, dtype=np.float64), np.nan)


_AUTO_MODELS = {
    "ds": "Dawid-Skene: workers have enough labels per class to estimate full confusion matrices",
    "ds+vote": "a reliability-weighted vote blended with smoothed Dawid-Skene: workers have "
    "too few labels per class for full confusion matrices",
}


def _method_used(result: inference.InferenceResult, requested: str) -> tuple[str, str]:
    """The model that produced the result, and one line saying why it was used."""
    if requested != "auto":
        return result.method, "chosen in the quality settings"
    chosen = str(result.details.get("chosen", result.method))
    density = result.details.get("labels_per_cell")
    why = _AUTO_MODELS.get(chosen, chosen)
    if density is None:
        return chosen, f"automatic: {why}"
    return chosen, f"automatic: {why} (median {density:.2f} labels per worker and class pair)"


def signals_compute(votes: Votes, consensus: Consensus) -> WorkerSignals:
    """Every spam signal of every worker (excluded ones too) against the current consensus."""
    gold = np.where(votes.gold_label_idx >= 0, votes.gold_label_idx, -1)
    return spam_signals(
        item_idx=votes.item_idx,
        worker_idx=votes.worker_idx,
        label_idx=votes.label_idx,
        n_items=votes.n_items,
        n_workers=votes.n_workers,
        n_classes=votes.n_classes,
        consensus=consensus.label,
        gold_label_idx=gold,
        reliability=consensus.reliability,
        duration_ms=votes.duration_ms,
        submitted_at=votes.submitted_at,
        client_key=votes.client_code,
    )


@dataclass(frozen=True)
class GoldStats:
    """Per worker gold figures, over all gold answers (retired gold included)."""

    seen: np.ndarray
    correct: np.ndarray
    low: np.ndarray
    high: np.ndarray
    recall: np.ndarray  # n_workers x n_classes, NaN where no gold of the class
    recent: np.ndarray  # accuracy on the latest GOLD_TREND_WINDOW gold answers, NaN with none
    vote_mask: np.ndarray  # per vote: on a gold item with a valid answer
    vote_correct: np.ndarray  # per vote


def gold_stats(votes: Votes) -> GoldStats:
    n = votes.n_workers
    gold_of_vote = votes.gold_label_idx[votes.item_idx]
    on_gold = gold_of_vote >= 0
    correct = on_gold & (votes.label_idx == gold_of_vote)
    seen = np.bincount(votes.worker_idx[on_gold], minlength=n)
    right = np.bincount(votes.worker_idx[correct], minlength=n)
    low, high = wilson_interval(right, seen)
    recall = class_recall(
        votes.worker_idx[on_gold],
        votes.label_idx[on_gold],
        gold_of_vote[on_gold],
        n_workers=n,
        n_classes=votes.n_classes,
    )
    recent = worker_recent_accuracy(
        votes.worker_idx[on_gold],
        correct[on_gold],
        votes.submitted_at[on_gold],
        n_workers=n,
        window=GOLD_TREND_WINDOW,
    )
    return GoldStats(seen, right, low, high, recall, recent, on_gold, correct)


def gold_rates_recent(votes: Votes, stats: GoldStats, policy: GoldPolicy) -> np.ndarray:
    """Adaptive gold rate per worker from their last GOLD_RATE_WINDOW gold answers."""
    on_gold = np.flatnonzero(stats.vote_mask)
    workers = votes.worker_idx[on_gold]
    # Per worker, newest first; keep the first GOLD_RATE_WINDOW of each.
    order = np.lexsort((-votes.submitted_at[on_gold], workers))
    ordered = workers[order]
    starts = np.searchsorted(ordered, np.arange(votes.n_workers))
    rank = np.arange(ordered.size) - starts[ordered] if ordered.size else ordered
    recent = on_gold[order[rank < GOLD_RATE_WINDOW]]
    seen = np.bincount(votes.worker_idx[recent], minlength=votes.n_workers)
    right = np.bincount(
        votes.worker_idx[recent], weights=stats.vote_correct[recent], minlength=votes.n_workers
    ).astype(np.int64)
    return gold_rates(gold_seen=seen, gold_correct=right, policy=policy)


def reliable_mask(consensus: Consensus, votes: Votes, *, bar: float) -> np.ndarray:
    evidence = np.bincount(votes.worker_idx[consensus.counted], minlength=votes.n_workers)
    return reliable_workers(
        reliability=consensus.reliability,
        evidence=evidence,
        bar=bar,
        min_evidence=RELIABLE_MIN_EVIDENCE,
    )


def worker_item_counts(votes: Votes, items: np.ndarray) -> np.ndarray:
    """Per worker: how many of the items in the boolean mask `items` they have voted on."""
    hit = items[votes.item_idx]
    return np.bincount(votes.worker_idx[hit], minlength=votes.n_workers)


def gold_pool(votes: Votes, *, rates: np.ndarray, active: np.ndarray) -> dict[str, Any]:
    """gold_pool_status for the `active` workers, plus the pool's size."""
    live_gold = (votes.gold_label_idx >= 0) & ~votes.gold_retired
    open_regular = ~votes.is_gold & (votes.item_annotations < votes.target)
    unseen = live_gold.sum() - worker_item_counts(votes, live_gold)
    remaining = open_regular.sum() - worker_item_counts(votes, open_regular)
    status = gold_pool_status(
        unseen_gold_per_worker=unseen[active],
        gold_rate=rates[active],
        open_items_per_worker=remaining[active],
    )
    return {
        **status,
        "active_gold": int(live_gold.sum()),
        "retired_gold": int(((votes.gold_label_idx >= 0) & votes.gold_retired).sum()),
    }


def json_number(value: float, decimals: int = PROBABILITY_DECIMALS) -> float | None:
    value = float(value)
    return round(value, decimals) if math.isfinite(value) else None


def full_details(
    votes: Votes,
    consensus: Consensus,
    stats: GoldStats,
    *,
    ordinal: bool,
    pool: dict[str, Any],
) -> dict[str, Any]:
    """The expensive statistics of a full run (ProjectScore.details minus the bookkeeping)."""
    labels, k = votes.labels, votes.n_classes
    regular = consensus.counted & ~votes.is_gold[votes.item_idx]
    items, workers = votes.item_idx[regular], votes.worker_idx[regular]
    answers, stamps = votes.label_idx[regular], votes.submitted_at[regular]
    agreement = agreement_summary(
        items,
        workers,
        answers,
        n_items=votes.n_items,
        n_workers=votes.n_workers,
        n_classes=k,
        ordinal=ordinal,
        n_boot=BOOTSTRAP_SAMPLES,
        seed=0,
    )
    for row in agreement.get("per_label", []):
        row["label"] = labels[row["label"]] if 0 <= row["label"] < len(labels) else row["label"]
    cohen = agreement.get("cohen") or {}
    cohen["workers"] = [int(votes.worker_ids[w]) for w in cohen.get("workers", [])]
    over_time = agreement_over_time(
        items,
        workers,
        answers,
        stamps,
        n_classes=k,
        buckets=TREND_BUCKETS,
        n_boot=TREND_BOOTSTRAP_SAMPLES,
        seed=0,
    )
    mask = stats.vote_mask
    gold_trend = accuracy_trend(
        stats.vote_correct[mask], votes.submitted_at[mask], buckets=TREND_BUCKETS
    )
    confusion = confusion_matrix(
        votes.label_idx[mask], votes.gold_label_idx[votes.item_idx[mask]], n_classes=k
    )
    return {
        "agreement": agreement,
        "over_time": over_time,
        "gold_trend": gold_trend,
        "confusion": {"labels": list(labels), "matrix": confusion.tolist()},
        "label_distribution": label_distribution(votes, consensus),
        "gold_pool": pool,
    }


def label_distribution(votes: Votes, consensus: Consensus) -> list[dict[str, Any]]:
    """Consensus labels of regular items against the expected prior (model's, else gold's)."""
    k = votes.n_classes
    chosen = consensus.label[~votes.is_gold & (consensus.label >= 0)]
    counts = np.bincount(chosen, minlength=k)[:k]
    total = int(counts.sum())
    expected = consensus.priors
    if expected is None or expected.shape != (k,):
        gold = votes.gold_label_idx[votes.gold_label_idx >= 0]
        expected = np.bincount(gold, minlength=k)[:k].astype(np.float64)
        expected = expected / expected.sum() if expected.sum() else None
    return [
        {
            "label": label,
            "count": int(counts[c]),
            "share": json_number(counts[c] / total) if total else 0.0,
            "expected_share": None if expected is None else json_number(expected[c]),
        }
        for c, label in enumerate(votes.labels)
    ]
