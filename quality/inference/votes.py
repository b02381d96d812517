"""Vote-based methods: majority vote, gold-weighted majority vote and the iterated weighted vote."""

from __future__ import annotations

import numpy as np

from quality.inference._base import (
    Gold,
    InferenceResult,
    _break_ties,
    _clamp,
    _gold_arrays,
    _log_normalise,
    _no_labels_nan,
    _per_worker_mean,
    _result,
    _start,
    _validate,
    _vote_shares,
    vote_counts,
)


def majority_vote(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    seed: int | np.random.Generator | None = 0,
) -> InferenceResult:
    """Majority vote: posteriors are vote shares; ties are broken uniformly at random (seeded)."""
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g = _gold_arrays(gold, n_items, n_classes)
    post = _start(items, labels, n_items, n_classes, g)
    chosen = _break_ties(post, seed)
    conf = post[np.arange(n_items), chosen] if post.size else np.empty(0)
    return InferenceResult(
        posteriors=post,
        labels=chosen,
        confidence=conf,
        worker_reliability=_per_worker_mean(post[items, labels], workers, n_workers),
        method="mv",
    )


def weighted_majority_vote(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    strength: float = 2.0,
    seed: int | np.random.Generator | None = 0,
) -> InferenceResult:
    """Majority vote weighted by each worker's log-odds of a smoothed accuracy.

    A worker's accuracy is their share of right answers on the given gold items, smoothed by
    ``strength`` pseudo-answers at their agreement with majority vote on the other items (so
    workers with little gold lean on agreement; with no gold at all this is Wawa-like). The weight
    ``log((K-1) p / (1-p))`` is the one-coin model's evidence per vote, so the posterior is the
    softmax of the weighted votes.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g_items, g_labels = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _start(items, labels, n_items, k, (g_items, g_labels))
    truth = np.full(n_items, -1)
    truth[g_items] = g_labels
    on_gold = truth[items] >= 0
    n_gold = np.bincount(workers[on_gold], minlength=n_workers).astype(np.float64)
    right = np.bincount(
        workers[on_gold], weights=labels[on_gold] == truth[items[on_gold]], minlength=n_workers
    )
    # Agreement with the majority on non-gold items, itself shrunk towards the crowd's mean.
    agree = post[items, labels]
    n_rest = np.bincount(workers[~on_gold], minlength=n_workers).astype(np.float64)
    agreed = np.bincount(workers[~on_gold], weights=agree[~on_gold], minlength=n_workers)
    crowd = (agreed.sum() + right.sum() + 1.0) / (n_rest.sum() + n_gold.sum() + k)
    agreement = (agreed + strength * crowd) / (n_rest + strength)
    accuracy = (right + strength * agreement) / (n_gold + strength)
    p = np.clip(accuracy, 1e-3, 1.0 - 1e-3)
    weight = np.log((k - 1) * p / (1.0 - p)) if k > 1 else np.zeros(n_workers)
    scores = vote_counts(items, labels, n_items=n_items, n_classes=k, weights=weight[workers])
    post, _ = _log_normalise(scores)
    _clamp(post, g_items, g_labels)
    chosen = _break_ties(post, seed)
    conf = post[np.arange(n_items), chosen] if post.size else np.empty(0)
    return InferenceResult(
        posteriors=post,
        labels=chosen,
        confidence=conf,
        worker_accuracy=accuracy,
        worker_reliability=_no_labels_nan(accuracy, workers, n_workers),
        method="wmv",
    )


def iterated_vote(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    power: float = 2.0,
    max_iter: int = 10,
) -> InferenceResult:
    """Vote weighted by agreement with the current consensus, iterated (Wawa / zero-based skill).

    A worker's weight is their share of labels that agree with the consensus label, raised to
    ``power`` (so a coin-flipper counts far less than a careful worker), and the consensus is
    re-computed until it stops changing. Gold items count with their known answer. Unlike EM
    models, no single worker can outvote a clear majority, which keeps it robust when workers
    have too few labels to estimate a confusion matrix.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _start(items, labels, n_items, k, g)
    chosen = post.argmax(axis=1) if post.size else np.empty(0, dtype=np.int64)
    agreement = np.full(n_workers, np.nan)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        agreement = _per_worker_mean((labels == chosen[items]).astype(float), workers, n_workers)
        weight = np.nan_to_num(agreement) ** power
        counts = vote_counts(items, labels, n_items=n_items, n_classes=k, weights=weight[workers])
        post = _vote_shares(counts)
        _clamp(post, *g)
        previous, chosen = chosen, post.argmax(axis=1)
        if np.array_equal(previous, chosen):
            break
    return _result(
        post,
        iterations=iterations,
        worker_accuracy=agreement,
        worker_reliability=agreement,
        method="vote",
    )
