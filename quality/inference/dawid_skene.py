"""Dawid-Skene (full confusion matrices) and one-coin Dawid-Skene, fitted by EM."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from quality.inference._base import (
    Gold,
    InferenceResult,
    _expectation_maximisation,
    _gold_arrays,
    _no_labels_nan,
    _one_hot_log_joint,
    _priors,
    _result,
    _start,
    _validate,
)


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
    shrink: float = 0.0,
    tol: float = 1e-7,
    max_iter: int = 100,
) -> InferenceResult:
    """Dawid-Skene EM with full per-worker confusion matrices, initialised from majority vote.

    ``alpha`` is a symmetric Dirichlet (Laplace) pseudo-count added to every confusion cell and
    to the class priors, so workers with one label and classes never seen stay finite.
    ``shrink`` adds that many pseudo-answers per confusion row distributed as the crowd's pooled
    confusion row (a hierarchical prior: workers with few labels look like the average worker).
    EM stops when the relative change of the log-likelihood is at most ``tol`` or after
    ``max_iter`` iterations.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _start(items, labels, n_items, k, g)
    # counts[i, w * k + observed]: how often item i got `observed` from worker w. Both EM steps
    # are one sparse x dense product with it (no per-label gathers, one pass over the labels).
    counts = sparse.csr_matrix(
        (np.ones(items.size), (items, workers * k + labels)), shape=(n_items, n_workers * k)
    )
    counts_t = counts.T.tocsr()
    # Kept as [worker, observed, true] (rows of the products above); exposed as [w, true, obs].
    by_observed = np.empty((n_workers, k, k))

    def log_joint_of(post: np.ndarray, priors: np.ndarray) -> np.ndarray:
        # M step: expected (observed, true) counts per worker, smoothed and normalised per true.
        by_observed[:] = (counts_t @ post).reshape(n_workers, k, k)
        if shrink > 0:
            pooled = by_observed.sum(axis=0) + 1.0
            by_observed[:] += shrink * pooled / pooled.sum(axis=0, keepdims=True)
        by_observed[:] += alpha
        by_observed[:] /= by_observed.sum(axis=1, keepdims=True)
        # E step: log joint = log prior + sum over an item's labels of log confusion.
        return counts @ np.log(by_observed).reshape(n_workers * k, k) + np.log(priors)

    post, fit = _expectation_maximisation(
        post, log_joint_of, gold=g, alpha=alpha, tol=tol, max_iter=max_iter
    )
    priors = _priors(post, alpha)
    confusion = np.ascontiguousarray(by_observed.transpose(0, 2, 1))
    reliability = np.einsum("t,wtt->w", priors, confusion)
    return _result(
        post,
        **fit,
        priors=priors,
        confusion=confusion,
        worker_reliability=_no_labels_nan(reliability, workers, n_workers),
        method="ds",
    )


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
    g = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _start(items, labels, n_items, k, g)
    per_worker = np.bincount(workers, minlength=n_workers).astype(np.float64)
    accuracy = np.full(n_workers, 1.0 / k)
    if k == 1:  # a single class: nothing to infer
        ones = np.ones(n_workers)
        return _result(
            post,
            priors=np.ones(1),
            worker_accuracy=ones,
            worker_reliability=_no_labels_nan(ones, workers, n_workers),
            method="onecoin",
        )

    def log_joint_of(post: np.ndarray, priors: np.ndarray) -> np.ndarray:
        right = np.bincount(workers, weights=post[items, labels], minlength=n_workers)
        accuracy[:] = (right + alpha) / (per_worker + 2.0 * alpha)
        log_right = np.log(accuracy)
        log_wrong = np.log((1.0 - accuracy) / (k - 1))
        bonus = (log_right - log_wrong)[workers]
        return _one_hot_log_joint(items, labels, log_wrong[workers], bonus, n_items, k) + (
            np.log(priors)
        )

    post, fit = _expectation_maximisation(
        post, log_joint_of, gold=g, alpha=alpha, tol=tol, max_iter=max_iter
    )
    return _result(
        post,
        **fit,
        priors=_priors(post, alpha),
        worker_accuracy=accuracy,
        worker_reliability=_no_labels_nan(accuracy, workers, n_workers),
        method="onecoin",
    )
