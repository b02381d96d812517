"""Inter-annotator reliability over sparse votes: Krippendorff's alpha and Fleiss' kappa.

Votes are parallel arrays (item index, worker index, value per vote); nothing here reads ids or
touches Django, so task types and the quality engine share one implementation. Both coefficients
come from per-unit sufficient statistics (`Units`):

- the Krippendorff coincidence matrix O[c, k] = Σ_u w_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1);
  its margins are the pairable votes per class, and with a distance matrix it gives alpha at any
  level of measurement;
- Σ_u w_u P_u, the Fleiss per-item agreement P_u = Σ_c n_uc (n_uc - 1) / (m_u (m_u - 1)).

The unit weights w_u are 1 for a point estimate; `quality.agreement` passes bootstrap resample
counts to get a whole block of resamples with one matrix product. Items with fewer than two votes
carry no agreement and are dropped. Repeated votes of one worker on one item count as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

LEVELS = ("nominal", "ordinal", "interval")


def index_arrays(*arrays: Any) -> list[np.ndarray]:
    """The arrays flattened as int64; ValueError when their lengths differ."""
    out = [np.asarray(a).ravel() for a in arrays]
    if len({a.size for a in out}) > 1:
        raise ValueError("vote arrays must have the same length")
    return [a.astype(np.int64, copy=False) for a in out]


def check_range(values: np.ndarray, size: int, name: str) -> None:
    """ValueError when an index in `values` falls outside 0..size-1."""
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{name} index out of range 0..{size - 1}")


def scalar(value: float) -> float | None:
    """A finite number as a float, anything else (NaN, inf) as None."""
    return float(value) if np.isfinite(value) else None


# ---------------------------------------------------------------- sufficient statistics


@dataclass(frozen=True)
class Units:
    """Pairable units (items with ≥ 2 votes) as per-unit statistics ready for weighting."""

    n_classes: int
    pairs: sparse.csr_matrix  # units × classes²: the unit's share of the coincidence matrix
    fleiss: np.ndarray  # units: Fleiss per-item agreement P_u

    @property
    def n_units(self) -> int:
        return int(self.fleiss.size)

    def totals(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coincidences (b, K, K), Σ w P_u and Σ w for each row of `weights` (b × units)."""
        k = self.n_classes
        coincidences = np.asarray(self.pairs.T @ weights.T).T.reshape(-1, k, k)
        return coincidences, weights @ self.fleiss, weights.sum(axis=1)

    def point(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`totals` with every unit weighted 1 (one row)."""
        return self.totals(np.ones((1, self.n_units)))


def units_build(units: np.ndarray, codes: np.ndarray, n_classes: int) -> Units:
    """`Units` from one (unit, class code) pair per vote; units with one vote are dropped."""
    units = np.asarray(units, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    m = np.bincount(units)
    keep = m[units] >= 2
    _, units = np.unique(units[keep], return_inverse=True)
    units = units.ravel()
    codes = codes[keep]
    n_units = int(units.max()) + 1 if units.size else 0
    counts = sparse.csr_matrix((np.ones(units.size), (units, codes)), shape=(n_units, n_classes))
    counts.sum_duplicates()
    counts.sort_indices()
    m = np.asarray(counts.sum(axis=1)).ravel()
    squares = np.asarray(counts.multiply(counts).sum(axis=1)).ravel()
    fleiss = (squares - m) / (m * (m - 1)) if n_units else np.zeros(0)
    # Every (class, class) pair inside each unit's row of `counts`, generated without a loop.
    per_row = np.diff(counts.indptr)
    entry_row = np.repeat(np.arange(n_units), per_row)
    repeats = per_row[entry_row]
    left = np.repeat(np.arange(counts.nnz), repeats)
    offset = np.arange(left.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    row = entry_row[left]
    right = counts.indptr[row] + offset
    value = counts.data[left] * counts.data[right] - np.where(left == right, counts.data[left], 0)
    pairs = sparse.csr_matrix(
        (value / (m[row] - 1), (row, counts.indices[left] * n_classes + counts.indices[right])),
        shape=(n_units, n_classes * n_classes),
    )
    return Units(n_classes=n_classes, pairs=pairs, fleiss=fleiss)


def distances(level: str, marginals: np.ndarray) -> np.ndarray:
    """Squared distances δ²(c, k) of Krippendorff's metrics; (b, K, K) for marginals (b, K)."""
    k = marginals.shape[1]
    codes = np.arange(k)
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(k), (marginals.shape[0], k, k))
    if level == "interval":
        return np.broadcast_to(
            (codes[:, None] - codes[None, :]).astype(float) ** 2, (marginals.shape[0], k, k)
        )
    if level != "ordinal":
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    low, high = np.minimum.outer(codes, codes), np.maximum.outer(codes, codes)
    cumulative = np.cumsum(marginals, axis=1)
    between = cumulative[:, high] - cumulative[:, low] + marginals[:, low]
    return (between - (marginals[:, :, None] + marginals[:, None, :]) / 2.0) ** 2


def alpha_from_coincidences(coincidences: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's alpha per resample from coincidence matrices (b, K, K); NaN if undefined."""
    marginals = coincidences.sum(axis=2)
    n = marginals.sum(axis=1)
    delta = distances(level, marginals)
    observed = (coincidences * delta).sum(axis=(1, 2))
    expected = np.einsum("bc,bk,bck->b", marginals, marginals, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (n - 1.0) * observed / expected
    return np.where(expected > 1e-12 * np.maximum(n * n, 1.0), alpha, np.nan)


def fleiss_from_totals(
    coincidences: np.ndarray, agreement: np.ndarray, units: np.ndarray
) -> np.ndarray:
    """Fleiss' kappa per resample (items with unequal raters: per-item agreement averaged)."""
    marginals = coincidences.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = marginals / marginals.sum(axis=1, keepdims=True)
        expected = (shares**2).sum(axis=1)
        kappa = (agreement / units - expected) / (1.0 - expected)
    return np.where((units > 0) & ~np.isclose(expected, 1.0), kappa, np.nan)


def per_label_from_coincidences(coincidences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: Fleiss' category kappa and one-vs-rest nominal alpha, each (b, K)."""
    marginals = coincidences.sum(axis=2)
    n = marginals.sum(axis=1, keepdims=True)
    disagreement = marginals - np.diagonal(coincidences, axis1=1, axis2=2)
    spread = marginals * (n - marginals)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(spread > 0, 1.0 - n * disagreement / spread, np.nan)
        alpha = np.where(spread > 0, 1.0 - (n - 1.0) * disagreement / spread, np.nan)
    return kappa, alpha


# ---------------------------------------------------------------- coefficients


def krippendorff_alpha(
    items: Any, workers: Any, values: Any, *, level: str = "nominal"
) -> float | None:
    """Krippendorff's alpha over sparse votes with any pattern of missing data.

    `values` are class codes (nominal), ordered codes or any ordered numbers (ordinal: only their
    order counts), or numbers (interval); NaN values are missing. `workers` is not needed by the
    coefficient (repeated votes count as given) and is only checked for length. None when no item
    has two values or all pairable values are equal.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    items, _ = index_arrays(items, workers)
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size != items.size:
        raise ValueError("vote arrays must have the same length")
    present = ~np.isnan(values)
    items, values = items[present], values[present]
    if level == "interval":
        return interval_alpha(items, values)
    domain, codes = np.unique(values, return_inverse=True)
    units = units_build(items, codes.ravel(), max(domain.size, 1))
    if units.n_units == 0:
        return None
    coincidences, _, _ = units.point()
    return scalar(alpha_from_coincidences(coincidences, level)[0])


def interval_alpha(items: np.ndarray, values: np.ndarray) -> float | None:
    """Interval alpha from per-item moments, so any number of distinct values costs O(votes)."""
    if items.size == 0:
        return None
    m = np.bincount(items)
    keep = m[items] >= 2
    items, values = items[keep], values[keep]
    if items.size == 0:
        return None
    values = values - values.mean()  # alpha is shift invariant; centring avoids cancellation
    m = np.bincount(items).astype(np.float64)
    first, second = np.bincount(items, values), np.bincount(items, values * values)
    used = m >= 2
    observed = (2.0 * (m * second - first * first))[used] / (m[used] - 1.0)
    n = m.sum()
    expected = 2.0 * (n * second.sum() - first.sum() ** 2)
    if expected <= 1e-12 * n * second.sum():
        return None
    return float(1.0 - (n - 1.0) * observed.sum() / expected)


def fleiss_kappa(items: Any, workers: Any, codes: Any) -> float | None:
    """Fleiss' kappa over sparse votes (class codes ≥ 0); items may have unequal raters.

    The observed agreement is the mean of the per-item agreements P_u over items with two or more
    votes (exactly Fleiss (1971) when every item has the same number of raters); chance agreement
    comes from the class shares of those items' votes. None when no item has two votes or every
    pairable vote is in one class.
    """
    items, _, codes = index_arrays(items, workers, codes)
    if codes.size and codes.min() < 0:
        raise ValueError("class codes must be 0 or more")
    n_classes = int(codes.max()) + 1 if codes.size else 1
    units = units_build(items, codes, n_classes)
    if units.n_units == 0:
        return None
    return scalar(fleiss_from_totals(*units.point())[0])
