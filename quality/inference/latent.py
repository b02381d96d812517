"""Models with a latent worker trait: MACE (spammers) and GLAD (ability and item difficulty)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from quality.inference._base import (
    Gold,
    InferenceResult,
    _expectation_maximisation,
    _gold_arrays,
    _no_labels_nan,
    _one_hot_log_joint,
    _per_worker_mean,
    _priors,
    _result,
    _start,
    _validate,
)


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
