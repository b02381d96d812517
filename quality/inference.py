"""Truth inference over sparse crowd labels: majority vote, Dawid-Skene and one-coin Dawid-Skene.

Labels come as three equal-length integer arrays (item index, worker index, label index); repeated
(item, worker) pairs are counted as given. Everything is vectorised with NumPy: the E and M steps
use ``np.bincount`` over the label arrays, so the only Python loops are over EM iterations and
classes. Optional ``gold`` ({item index: class index} or a pair of arrays) fixes those items'
truths (semi-supervised): their posteriors are one-hot throughout EM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Gold = Mapping[int, int] | tuple[np.ndarray, np.ndarray] | None

__all__ = [
    "InferenceResult",
    "dawid_skene",
    "expected_accuracy",
    "majority_vote",
    "one_coin_dawid_skene",
    "vote_counts",
]


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


def _validate(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
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


def _result(post: np.ndarray, **kwargs: object) -> InferenceResult:
    chosen = post.argmax(axis=1) if post.size else np.empty(0, dtype=np.int64)
    conf = post[np.arange(post.shape[0]), chosen] if post.size else np.empty(0)
    return InferenceResult(posteriors=post, labels=chosen, confidence=conf, **kwargs)


def vote_counts(
    items: np.ndarray, labels: np.ndarray, *, n_items: int, n_classes: int
) -> np.ndarray:
    """Return the (n_items x n_classes) matrix of vote counts."""
    items = np.asarray(items, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    flat = np.bincount(items * n_classes + labels, minlength=n_items * n_classes)
    return flat.reshape(n_items, n_classes).astype(np.float64)


def _vote_shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    n_classes = counts.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 1.0 / n_classes)


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
    g_items, g_labels = _gold_arrays(gold, n_items, n_classes)
    post = _vote_shares(vote_counts(items, labels, n_items=n_items, n_classes=n_classes))
    _clamp(post, g_items, g_labels)
    rng = np.random.default_rng(seed)
    is_max = post >= post.max(axis=1, keepdims=True) if post.size else post.astype(bool)
    # A random key per cell, kept only on the maxima: argmax picks one maximum uniformly.
    keys = np.where(is_max, rng.random(post.shape), -1.0)
    chosen = keys.argmax(axis=1) if post.size else np.empty(0, dtype=np.int64)
    conf = post[np.arange(n_items), chosen] if post.size else np.empty(0)
    return InferenceResult(posteriors=post, labels=chosen, confidence=conf)


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


def dawid_skene(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    alpha: float = 1e-4,
    tol: float = 1e-7,
    max_iter: int = 100,
) -> InferenceResult:
    """Dawid-Skene EM with full per-worker confusion matrices, initialised from majority vote.

    ``alpha`` is a symmetric Dirichlet (Laplace) pseudo-count added to every confusion cell and
    to the class priors, so workers with one label and classes never seen stay finite. EM stops
    when the relative change of the log-likelihood is at most ``tol`` or after ``max_iter``.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g_items, g_labels = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _vote_shares(vote_counts(items, labels, n_items=n_items, n_classes=k))
    _clamp(post, g_items, g_labels)
    wl = workers * k + labels  # flat (worker, observed) index of each label
    confusion = np.empty((n_workers, k, k))

    def log_joint_of(post: np.ndarray, priors: np.ndarray) -> np.ndarray:
        # M step: expected (true, observed) counts per worker, smoothed and row-normalised.
        for true in range(k):
            confusion[:, true, :] = np.bincount(
                wl, weights=post[items, true], minlength=n_workers * k
            ).reshape(n_workers, k)
        confusion[:] += alpha
        confusion[:] /= confusion.sum(axis=2, keepdims=True)
        # E step: log joint = log prior + sum over an item's labels of log confusion.
        log_conf = np.log(confusion)
        log_joint = np.empty((n_items, k))
        for true in range(k):
            log_joint[:, true] = np.bincount(
                items, weights=log_conf[workers, true, labels], minlength=n_items
            )
        return log_joint + np.log(priors)

    post, fit = _expectation_maximisation(
        post, log_joint_of, gold=(g_items, g_labels), alpha=alpha, tol=tol, max_iter=max_iter
    )
    return _result(post, **fit, priors=_priors(post, alpha), confusion=confusion)


def one_coin_dawid_skene(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    alpha: float = 1e-4,
    tol: float = 1e-7,
    max_iter: int = 100,
) -> InferenceResult:
    """One-coin Dawid-Skene: each worker is right with probability p_w, else uniform on the rest.

    ``alpha`` is a Beta pseudo-count on each worker's right/wrong counts and a Dirichlet
    pseudo-count on the class priors; ``tol`` and ``max_iter`` as in :func:`dawid_skene`.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g_items, g_labels = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _vote_shares(vote_counts(items, labels, n_items=n_items, n_classes=k))
    _clamp(post, g_items, g_labels)
    per_worker = np.bincount(workers, minlength=n_workers).astype(np.float64)
    accuracy = np.full(n_workers, 1.0 / k)
    if k == 1:  # a single class: nothing to infer
        return _result(post, priors=np.ones(1), worker_accuracy=np.ones(n_workers))
    il = items * k + labels

    def log_joint_of(post: np.ndarray, priors: np.ndarray) -> np.ndarray:
        right = np.bincount(workers, weights=post[items, labels], minlength=n_workers)
        accuracy[:] = (right + alpha) / (per_worker + 2.0 * alpha)
        log_right = np.log(accuracy)
        log_wrong = np.log((1.0 - accuracy) / (k - 1))
        # Every label contributes log_wrong to all classes, plus the difference to its own class.
        base = np.bincount(items, weights=log_wrong[workers], minlength=n_items)
        bonus = np.bincount(
            il, weights=(log_right - log_wrong)[workers], minlength=n_items * k
        ).reshape(n_items, k)
        return base[:, None] + bonus + np.log(priors)

    post, fit = _expectation_maximisation(
        post, log_joint_of, gold=(g_items, g_labels), alpha=alpha, tol=tol, max_iter=max_iter
    )
    return _result(post, **fit, priors=_priors(post, alpha), worker_accuracy=accuracy)


def _expectation_maximisation(
    post: np.ndarray,
    log_joint_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    gold: tuple[np.ndarray, np.ndarray],
    alpha: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The EM loop shared by the Dawid-Skene variants.

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
