"""Shared pieces of the inference methods: input checks, results, vote counts, the EM loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Gold = Mapping[int, int] | tuple[np.ndarray, np.ndarray] | None


def _empty_float() -> np.ndarray:
    return np.empty(0)


@dataclass(frozen=True)
class InferenceResult:
    """Posteriors (n_items x n_classes), their argmax labels and per-worker parameters."""

    posteriors: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    iterations: int = 0
    log_likelihood: float | None = None
    converged: bool = True
    priors: np.ndarray | None = None
    # Dawid-Skene: confusion[w, true, observed]; rows sum to 1.
    confusion: np.ndarray | None = None
    # One-coin Dawid-Skene: probability that each worker answers the true class.
    worker_accuracy: np.ndarray | None = None
    # Every method: P(worker's answer is right) in [0, 1]; NaN for a worker with no labels.
    worker_reliability: np.ndarray = field(default_factory=_empty_float)
    # The METHODS key that produced the result ("auto" names the model it chose in `details`).
    method: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _validate(
    items: Any,
    workers: Any,
    labels: Any,
    n_items: int,
    n_workers: int,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    items = np.asarray(items, dtype=np.int64).ravel()
    workers = np.asarray(workers, dtype=np.int64).ravel()
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if not (items.shape == workers.shape == labels.shape):
        raise ValueError(
            f"items, workers and labels must have equal length "
            f"(got {items.size}, {workers.size}, {labels.size})"
        )
    if n_items < 0 or n_workers < 0 or n_classes < 1:
        raise ValueError("n_items and n_workers must be >= 0 and n_classes >= 1")
    for name, arr, bound in (
        ("item", items, n_items),
        ("worker", workers, n_workers),
        ("label", labels, n_classes),
    ):
        if arr.size and (arr.min() < 0 or arr.max() >= bound):
            raise ValueError(f"{name} index out of range [0, {bound})")
    return items, workers, labels


def _gold_arrays(gold: Gold, n_items: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if gold is None:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if isinstance(gold, Mapping):
        g_items = np.fromiter(gold.keys(), dtype=np.int64, count=len(gold))
        g_labels = np.fromiter(gold.values(), dtype=np.int64, count=len(gold))
    else:
        g_items = np.asarray(gold[0], dtype=np.int64).ravel()
        g_labels = np.asarray(gold[1], dtype=np.int64).ravel()
        if g_items.shape != g_labels.shape:
            raise ValueError("gold item and class arrays must have equal length")
    if g_items.size:
        if g_items.min() < 0 or g_items.max() >= n_items:
            raise ValueError(f"gold item index out of range [0, {n_items})")
        if g_labels.min() < 0 or g_labels.max() >= n_classes:
            raise ValueError(f"gold class index out of range [0, {n_classes})")
    return g_items, g_labels


def _clamp(post: np.ndarray, g_items: np.ndarray, g_labels: np.ndarray) -> None:
    if g_items.size:
        post[g_items] = 0.0
        post[g_items, g_labels] = 1.0


def _per_worker_mean(values: np.ndarray, workers: np.ndarray, n_workers: int) -> np.ndarray:
    """Mean of a per-label quantity over each worker's labels; NaN for a worker with none."""
    totals = np.bincount(workers, weights=values, minlength=n_workers)
    counts = np.bincount(workers, minlength=n_workers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def _no_labels_nan(values: np.ndarray, workers: np.ndarray, n_workers: int) -> np.ndarray:
    counts = np.bincount(workers, minlength=n_workers)
    return np.where(counts > 0, np.clip(values, 0.0, 1.0), np.nan)


def _result(post: np.ndarray, **kwargs: Any) -> InferenceResult:
    chosen = post.argmax(axis=1) if post.size else np.empty(0, dtype=np.int64)
    conf = post[np.arange(post.shape[0]), chosen] if post.size else np.empty(0)
    return InferenceResult(posteriors=post, labels=chosen, confidence=conf, **kwargs)


def vote_counts(
    items: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_classes: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Return the (n_items x n_classes) matrix of (optionally weighted) vote counts."""
    items = np.asarray(items, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    flat = np.bincount(items * n_classes + labels, weights=weights, minlength=n_items * n_classes)
    return flat.reshape(n_items, n_classes).astype(np.float64)


def _vote_shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    n_classes = counts.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 1.0 / n_classes)


def _start(
    items: np.ndarray, labels: np.ndarray, n_items: int, k: int, gold: tuple[np.ndarray, ...]
) -> np.ndarray:
    """Majority-vote shares with gold items fixed: the starting posteriors of every EM."""
    post = _vote_shares(vote_counts(items, labels, n_items=n_items, n_classes=k))
    _clamp(post, *gold)
    return post


def _break_ties(post: np.ndarray, seed: int | np.random.Generator | None) -> np.ndarray:
    """Argmax per row with ties broken uniformly at random (seeded)."""
    if not post.size:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    is_max = post >= post.max(axis=1, keepdims=True) - 1e-12
    # A random key per cell, kept only on the maxima: argmax picks one maximum uniformly.
    keys = np.where(is_max, rng.random(post.shape), -1.0)
    return keys.argmax(axis=1)


def expected_accuracy(
    posteriors: np.ndarray, gold_items: np.ndarray, gold_labels: np.ndarray
) -> float:
    """Expected accuracy under random tie-breaking: a k-way tie holding the truth scores 1/k."""
    gold_items = np.asarray(gold_items, dtype=np.int64)
    gold_labels = np.asarray(gold_labels, dtype=np.int64)
    if gold_items.size == 0:
        return float("nan")
    rows = posteriors[gold_items]
    is_max = np.isclose(rows, rows.max(axis=1, keepdims=True), rtol=0.0, atol=1e-12)
    credit = is_max[np.arange(gold_items.size), gold_labels] / is_max.sum(axis=1)
    return float(credit.mean())


def _log_normalise(log_joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise softmax of log joint probabilities; also returns the row log-sum-exp."""
    if not log_joint.size:
        return log_joint.copy(), np.zeros(log_joint.shape[0])
    top = log_joint.max(axis=1, keepdims=True)
    post = np.exp(log_joint - top)
    sums = post.sum(axis=1, keepdims=True)
    post /= sums
    return post, (np.log(sums) + top).ravel()


def _log_likelihood(
    log_joint: np.ndarray, lse: np.ndarray, g_items: np.ndarray, g_labels: np.ndarray
) -> float:
    if not g_items.size:
        return float(lse.sum())
    total = lse.copy()
    total[g_items] = log_joint[g_items, g_labels]
    return float(total.sum())


def _priors(post: np.ndarray, alpha: float) -> np.ndarray:
    counts = post.sum(axis=0) + alpha
    return counts / counts.sum()


def _one_hot_log_joint(
    items: np.ndarray,
    labels: np.ndarray,
    wrong: np.ndarray,
    bonus: np.ndarray,
    n_items: int,
    k: int,
) -> np.ndarray:
    """Sum of per-label log-likelihoods when a label scores `wrong` + `bonus` on its own class.

    Every label contributes `wrong` (its log-likelihood under any other true class) to all
    classes of its item, plus `bonus` to the class it names.
    """
    base = np.bincount(items, weights=wrong, minlength=n_items)
    extra = np.bincount(items * k + labels, weights=bonus, minlength=n_items * k)
    return base[:, None] + extra.reshape(n_items, k)


def _expectation_maximisation(
    post: np.ndarray,
    log_joint_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    gold: tuple[np.ndarray, np.ndarray],
    alpha: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The EM loop shared by the model-based methods.

    `log_joint_of(post, priors)` re-estimates the model from the posteriors (M step) and
    returns each item's log joint over classes; the loop normalises it (E step), keeps gold
    items fixed and stops on a relative log-likelihood change of at most `tol`.
    """
    g_items, g_labels = gold
    prev_ll: float | None = None
    ll = float("nan")
    converged = False
    iterations = 0
    for step in range(1, max_iter + 1):
        iterations = step
        log_joint = log_joint_of(post, _priors(post, alpha))
        post, lse = _log_normalise(log_joint)
        _clamp(post, g_items, g_labels)
        ll = _log_likelihood(log_joint, lse, g_items, g_labels)
        if prev_ll is not None and abs(ll - prev_ll) <= tol * max(1.0, abs(prev_ll)):
            converged = True
            break
        prev_ll = ll
    fit = {"iterations": iterations, "log_likelihood": ll, "converged": converged}
    return post, fit
