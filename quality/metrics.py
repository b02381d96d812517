"""Agreement coefficients over a vote-count matrix (items × labels), vectorised with NumPy.

`counts[i, k]` is how many annotators gave label k to item i. Items with fewer than two
annotations carry no agreement information and are ignored by both coefficients.
"""

from __future__ import annotations

import numpy as np


def _pairable(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError("counts must be a 2-D items × labels matrix")
    return counts[counts.sum(axis=1) >= 2]


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa; items may have different numbers of raters (per-item agreement averaged).

    With the same number of raters on every item this is exactly Fleiss (1971).
    Returns None when fewer than one item has two ratings or chance agreement is 1.
    """
    table = _pairable(counts)
    if table.shape[0] == 0:
        return None
    raters = table.sum(axis=1)
    per_item = ((table * (table - 1)).sum(axis=1)) / (raters * (raters - 1))
    observed = per_item.mean()
    shares = table.sum(axis=0) / table.sum()
    expected = float((shares**2).sum())
    if np.isclose(expected, 1.0):
        return None
    return float((observed - expected) / (1.0 - expected))


def krippendorff_alpha_nominal(counts: np.ndarray) -> float | None:
    """Krippendorff's alpha for nominal data with missing values (coincidence-matrix form)."""
    table = _pairable(counts)
    if table.shape[0] == 0:
        return None
    raters = table.sum(axis=1)
    # Observed coincidences off the diagonal are what disagreement counts; for nominal data
    # D_o = 1 - sum_i sum_k n_ik (n_ik - 1) / (m_i - 1) / n.
    n_total = table.sum()
    agree = ((table * (table - 1)).sum(axis=1) / (raters - 1)).sum()
    observed_disagreement = 1.0 - agree / n_total
    marginals = table.sum(axis=0)
    expected_disagreement = 1.0 - float((marginals * (marginals - 1)).sum()) / (
        n_total * (n_total - 1)
    )
    if np.isclose(expected_disagreement, 0.0):
        return None
    return float(1.0 - observed_disagreement / expected_disagreement)


def vote_shares(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the index of the majority label (ties: lowest index) and its vote share."""
    table = np.asarray(counts, dtype=np.float64)
    totals = table.sum(axis=1)
    winners = table.argmax(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, table.max(axis=1) / totals, 0.0)
    return winners, shares


# Landis & Koch (1977): inclusive upper bound of each band at or above zero, and its reading.
KAPPA_BANDS = (
    (0.2, "slight agreement"),
    (0.4, "fair agreement"),
    (0.6, "moderate agreement"),
    (0.8, "substantial agreement"),
)


def agreement_reading_kappa(kappa: float | None) -> str:
    """Plain-language reading of a kappa value (Landis & Koch 1977 bands)."""
    if kappa is None:
        return "not enough overlapping labels yet"
    if kappa < 0:
        return "less than chance agreement"
    for upper, reading in KAPPA_BANDS:
        if kappa <= upper:
            return reading
    return "almost perfect agreement"


def agreement_reading_alpha(alpha: float | None) -> str:
    """Plain-language reading of Krippendorff's alpha (his 0.667 / 0.800 rule of thumb)."""
    if alpha is None:
        return "not enough overlapping labels yet"
    if alpha >= 0.8:
        return "reliable"
    if alpha >= 0.667:
        return "good enough for tentative conclusions only"
    return "too low to rely on"
