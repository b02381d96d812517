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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import minimize

Gold = Mapping[int, int] | tuple[np.ndarray, np.ndarray] | None

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


def mace(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    knowing: tuple[float, float] = (2.0, 1.0),
    spam_alpha: float = 1.0,
    alpha: float = 1e-4,
    tol: float = 1e-7,
    max_iter: int = 100,
) -> InferenceResult:
    """MACE (Hovy et al. 2013): each worker knows the answer with probability theta_w, else spams.

    A spamming worker draws from their own label distribution xi_w (so a constant answerer is a
    spammer with a one-hot xi). EM with a Beta(``knowing``) prior on theta_w and a symmetric
    Dirichlet(``spam_alpha``) prior on xi_w; class priors as in :func:`dawid_skene`.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _start(items, labels, n_items, k, g)
    per_worker = np.bincount(workers, minlength=n_workers).astype(np.float64)
    theta = np.full(n_workers, 0.5)
    xi = np.full((n_workers, k), 1.0 / k)
    wl = workers * k + labels
    a, b = knowing

    def log_joint_of(post: np.ndarray, priors: np.ndarray) -> np.ndarray:
        # M step: a label equal to the truth was "known" with odds theta : (1-theta) xi_label.
        spam_own = (1.0 - theta[workers]) * xi[workers, labels]
        known = post[items, labels] * theta[workers] / (theta[workers] + spam_own)
        theta[:] = (np.bincount(workers, weights=known, minlength=n_workers) + a - 1.0) / (
            per_worker + a + b - 2.0
        )
        np.clip(theta, 1e-6, 1.0 - 1e-6, out=theta)
        spammed = np.bincount(wl, weights=1.0 - known, minlength=n_workers * k)
        xi[:] = spammed.reshape(n_workers, k) + spam_alpha
        xi[:] /= xi.sum(axis=1, keepdims=True)
        # E step: log P(label | truth) = log(theta [label == truth] + (1 - theta) xi_label).
        log_spam = np.log((1.0 - theta[workers]) * xi[workers, labels])
        log_hit = np.log(theta[workers] + (1.0 - theta[workers]) * xi[workers, labels])
        return _one_hot_log_joint(items, labels, log_spam, log_hit - log_spam, n_items, k) + (
            np.log(priors)
        )

    post, fit = _expectation_maximisation(
        post, log_joint_of, gold=g, alpha=alpha, tol=tol, max_iter=max_iter
    )
    priors = _priors(post, alpha)
    reliability = theta + (1.0 - theta) * (xi @ priors)
    return _result(
        post,
        **fit,
        priors=priors,
        worker_accuracy=theta,
        worker_reliability=_no_labels_nan(reliability, workers, n_workers),
        method="mace",
        details={"spam_distribution": xi},
    )


def glad(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    gold: Gold = None,
    alpha: float = 1e-4,
    prior_sd: float = 1.0,
    tol: float = 1e-6,
    max_iter: int = 50,
    m_steps: int = 10,
) -> InferenceResult:
    """GLAD (Whitehill et al. 2009): P(right) = sigmoid(ability_w * easiness_i), else uniform.

    Ability is real (negative for adversarial workers), easiness = exp(log_easiness) > 0; both
    have Gaussian priors (ability around 1, log-easiness around 0, sd ``prior_sd``). The M step
    runs ``m_steps`` L-BFGS iterations on the expected log-likelihood, warm-started.
    """
    items, workers, labels = _validate(items, workers, labels, n_items, n_workers, n_classes)
    g = _gold_arrays(gold, n_items, n_classes)
    k = n_classes
    post = _start(items, labels, n_items, k, g)
    params = np.concatenate([np.ones(n_workers), np.zeros(n_items)])
    log_k1 = np.log(k - 1) if k > 1 else 0.0
    var = prior_sd**2

    def objective(x: np.ndarray, right: np.ndarray) -> tuple[float, np.ndarray]:
        ability, log_easy = x[:n_workers], x[n_workers:]
        easy = np.exp(log_easy)
        s = ability[workers] * easy[items]
        log_p = -np.logaddexp(0.0, -s)
        log_q = -np.logaddexp(0.0, s)
        q = -(right * log_p + (1.0 - right) * log_q).sum()
        q += ((ability - 1.0) ** 2).sum() / (2 * var) + (log_easy**2).sum() / (2 * var)
        resid = right - np.exp(log_p)  # d(loglik)/ds
        grad_a = -np.bincount(workers, weights=resid * easy[items], minlength=n_workers)
        grad_b = -np.bincount(items, weights=resid * s, minlength=n_items)
        grad = np.concatenate([grad_a + (ability - 1.0) / var, grad_b + log_easy / var])
        return float(q), grad

    def log_joint_of(post: np.ndarray, priors: np.ndarray) -> np.ndarray:
        if k > 1 and items.size:
            fit = minimize(
                objective,
                params,
                args=(post[items, labels],),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": m_steps},
            )
            params[:] = fit.x
        s = params[:n_workers][workers] * np.exp(params[n_workers:])[items]
        log_p = -np.logaddexp(0.0, -s)
        log_wrong = -np.logaddexp(0.0, s) - log_k1
        return _one_hot_log_joint(items, labels, log_wrong, log_p - log_wrong, n_items, k) + (
            np.log(priors)
        )

    post, fit = _expectation_maximisation(
        post, log_joint_of, gold=g, alpha=alpha, tol=tol, max_iter=max_iter
    )
    ability = params[:n_workers].copy()
    s = ability[workers] * np.exp(params[n_workers:])[items]
    reliability = _per_worker_mean(np.exp(-np.logaddexp(0.0, -s)), workers, n_workers)
    return _result(
        post,
        **fit,
        priors=_priors(post, alpha),
        worker_accuracy=reliability,
        worker_reliability=reliability,
        method="glad",
        details={"ability": ability, "easiness": np.exp(params[n_workers:])},
    )


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
