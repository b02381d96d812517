"""Truth inference over sparse crowd labels: MV, weighted MV, Dawid-Skene, one-coin DS, GLAD, MACE.

Labels come as three equal-length integer arrays (item index, worker index, label index); repeated
(item, worker) pairs are counted as given. Everything is vectorised: the E and M steps are
``np.bincount`` calls over the label arrays or products with a sparse (item x worker-answer) count
matrix, so the only Python loops are over EM iterations and classes. Optional ``gold``
({item index: class index} or a pair of arrays) fixes those items' truths (semi-supervised):
their posteriors are one-hot throughout EM. Every method starts from majority vote and returns an
:class:`InferenceResult` with per-item posteriors and per-worker reliability (the probability
that the worker's answer is right, NaN for a worker without labels).

:func:`infer` dispatches on a method key (the keys of :data:`METHODS`, mirrored by
``quality.models.Method``); ``"auto"`` (:func:`adaptive`) picks a model per data set.
This module needs only NumPy and SciPy (no Django), so benchmarks can import it anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from quality.inference._base import (
    Gold,
    InferenceResult,
    _result,
    _validate,
    expected_accuracy,
    vote_counts,
)
from quality.inference.dawid_skene import dawid_skene, one_coin_dawid_skene
from quality.inference.latent import glad, mace
from quality.inference.votes import iterated_vote, majority_vote, weighted_majority_vote

__all__ = [
    "DEFAULT_METHOD",
    "DENSE_LABELS_PER_CELL",
    "METHODS",
    "SPARSE_VOTE_WEIGHT",
    "Gold",
    "InferenceResult",
    "adaptive",
    "dawid_skene",
    "expected_accuracy",
    "glad",
    "infer",
    "iterated_vote",
    "labels_per_cell",
    "mace",
    "majority_vote",
    "one_coin_dawid_skene",
    "vote_counts",
    "weighted_majority_vote",
]

METHODS: dict[str, str] = {
    "auto": "Automatic (adapts to the data)",
    "mv": "Majority vote",
    "wmv": "Gold-weighted majority vote",
    "ds": "Dawid-Skene",
    "onecoin": "One-coin Dawid-Skene",
    "glad": "GLAD",
    "mace": "MACE",
}


DEFAULT_METHOD = "auto"


# "auto": a worker model with K x K free cells needs a few labels per cell to be estimated. Below
# this many labels per cell for the median worker, full confusion matrices are mostly prior and
# noise, and a robust weighted vote is blended in (see `adaptive`).
DENSE_LABELS_PER_CELL = 2.0


# Weight of the weighted vote against Dawid-Skene in the sparse blend.
SPARSE_VOTE_WEIGHT = 2.0 / 3.0


def labels_per_cell(workers: np.ndarray, *, n_workers: int, n_classes: int) -> float:
    """Median labels per active worker divided by the K x K cells of a confusion matrix."""
    per_worker = np.bincount(np.asarray(workers, dtype=np.int64), minlength=n_workers)
    active = per_worker[per_worker > 0]
    return float(np.median(active)) / n_classes**2 if active.size else 0.0


def adaptive(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
) -> InferenceResult:
    """The default method: Dawid-Skene where workers are dense, blended with a vote where sparse.

    When the median worker has at least DENSE_LABELS_PER_CELL labels per confusion cell,
    Dawid-Skene's full confusion matrices are well estimated and it wins (class-dependent errors,
    imbalance, adversarial workers). Below that (many classes, workers with a handful of labels)
    EM over-trusts the few workers it thinks are good, so the posteriors are averaged with an
    iterated agreement-weighted vote (weight SPARSE_VOTE_WEIGHT), which cannot be outvoted by one
    worker. Gold answers are fixed truths in both.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    sizes = {"n_items": n_items, "n_workers": n_workers, "n_classes": n_classes}
    density = labels_per_cell(workers, n_workers=n_workers, n_classes=n_classes)
    # tol=1e-5 (relative, like crowd-kit's per-label ELBO tolerance): the last EM steps only
    # sharpen posteriors; stopping there keeps "auto" fast after every burst of submissions.
    if density >= DENSE_LABELS_PER_CELL or n_classes == 1:
        ds = dawid_skene(items, workers, labels, **sizes, gold=gold, tol=1e-5)
        details = {"labels_per_cell": density, "chosen": "ds"}
        return dataclasses.replace(ds, method="auto", details=details)
    # Sparse workers: each confusion row gets K pseudo-answers shaped like the crowd's pooled row,
    # so a worker with a handful of labels looks like the average worker, not a perfect one.
    ds = dawid_skene(items, workers, labels, **sizes, gold=gold, tol=1e-5, shrink=n_classes)
    vote = iterated_vote(items, workers, labels, **sizes, gold=gold)
    share = SPARSE_VOTE_WEIGHT
    return _result(
        share * vote.posteriors + (1.0 - share) * ds.posteriors,
        iterations=ds.iterations,
        log_likelihood=ds.log_likelihood,
        converged=ds.converged,
        priors=ds.priors,
        confusion=ds.confusion,
        worker_accuracy=vote.worker_accuracy,
        worker_reliability=share * vote.worker_reliability + (1.0 - share) * ds.worker_reliability,
        method="auto",
        details={"labels_per_cell": density, "chosen": "ds+vote"},
    )


_DISPATCH: dict[str, Callable[..., InferenceResult]] = {
    "auto": adaptive,
    "mv": majority_vote,
    "wmv": weighted_majority_vote,
    "ds": dawid_skene,
    "onecoin": one_coin_dawid_skene,
    "glad": glad,
    "mace": mace,
}


_SEEDED = {"mv", "wmv"}  # the methods that break ties at random


def infer(
    method: str,
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    seed: int = 0,
) -> InferenceResult:
    """Run the truth-inference method named by a key of METHODS; ValueError for an unknown one."""
    if method not in _DISPATCH:
        raise ValueError(f"unknown inference method {method!r} (choose from {', '.join(METHODS)})")
    extra: dict[str, Any] = {"seed": seed} if method in _SEEDED else {}
    return _DISPATCH[method](
        items,
        workers,
        labels,
        n_items=n_items,
        n_workers=n_workers,
        n_classes=n_classes,
        gold=gold,
        **extra,
    )
