"""Agreement between annotators over sparse votes, each with an item-bootstrap 95% interval.

Votes arrive as three parallel arrays: item index, worker index and label (class code or number)
per vote. Nothing here reads ids or touches Django. Every coefficient of one resample is derived
from two sufficient statistics, so the bootstrap is a pair of matrix products over resample
counts (O(n_boot × votes)) rather than a Python loop:

- the Krippendorff coincidence matrix O[c, k] = Σ_u w_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1);
  its margins are the pairable votes per class, its off-diagonal row sums the per-class
  disagreement, and with a distance matrix it gives alpha at any level of measurement;
- Σ_u w_u P_u, the Fleiss per-item agreement P_u = Σ_c n_uc (n_uc - 1) / (m_u (m_u - 1)).

Items with fewer than two votes carry no agreement and are dropped before resampling. Repeated
votes of one worker on one item count as given (as in `quality.metrics`), except in Cohen's kappa,
which needs one answer per worker and keeps the worker's latest vote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

LEVELS = ("nominal", "ordinal", "interval")
# Cells of one block of bootstrap weights (resamples × units): about 32 MB of float64.
_BLOCK_CELLS = 4_000_000
_COHEN_WORKERS = 40


def _index_arrays(*arrays: Any) -> list[np.ndarray]:
    out = [np.asarray(a).ravel() for a in arrays]
    if len({a.size for a in out}) > 1:
        raise ValueError("vote arrays must have the same length")
    return [a.astype(np.int64, copy=False) for a in out]


def _check_range(values: np.ndarray, size: int, name: str) -> None:
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{name} index out of range 0..{size - 1}")


# ---------------------------------------------------------------- sufficient statistics


@dataclass(frozen=True)
class _Units:
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


def _units(units: np.ndarray, codes: np.ndarray, n_classes: int) -> _Units:
    """Build `_Units` from one (unit, class code) pair per vote; units with one vote are dropped."""
    m = np.bincount(units)
    keep = m[units] >= 2
    _, units = np.unique(units[keep], return_inverse=True)
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
    return _Units(n_classes=n_classes, pairs=pairs, fleiss=fleiss)


def _distances(level: str, marginals: np.ndarray) -> np.ndarray:
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


def _alpha(coincidences: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's alpha per resample from coincidence matrices (b, K, K); NaN if undefined."""
    marginals = coincidences.sum(axis=2)
    n = marginals.sum(axis=1)
    delta = _distances(level, marginals)
    observed = (coincidences * delta).sum(axis=(1, 2))
    expected = np.einsum("bc,bk,bck->b", marginals, marginals, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (n - 1.0) * observed / expected
    return np.where(expected > 1e-12 * np.maximum(n * n, 1.0), alpha, np.nan)


def _fleiss(coincidences: np.ndarray, agreement: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Fleiss' kappa per resample (items with unequal raters: per-item agreement averaged)."""
    marginals = coincidences.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = marginals / marginals.sum(axis=1, keepdims=True)
        expected = (shares**2).sum(axis=1)
        kappa = (agreement / units - expected) / (1.0 - expected)
    return np.where((units > 0) & ~np.isclose(expected, 1.0), kappa, np.nan)


def _per_label(coincidences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: Fleiss' category kappa and one-vs-rest nominal alpha, each (b, K)."""
    marginals = coincidences.sum(axis=2)
    n = marginals.sum(axis=1, keepdims=True)
    disagreement = marginals - np.diagonal(coincidences, axis1=1, axis2=2)
    spread = marginals * (n - marginals)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(spread > 0, 1.0 - n * disagreement / spread, np.nan)
        alpha = np.where(spread > 0, 1.0 - (n - 1.0) * disagreement / spread, np.nan)
    return kappa, alpha


# ---------------------------------------------------------------- bootstrap


def _weight_blocks(n_units: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Multinomial resample counts (rows: resamples, columns: units), in memory-bounded blocks."""
    rng = np.random.default_rng(seed)
    step = max(1, min(n_boot, _BLOCK_CELLS // max(n_units, 1)))
    for start in range(0, n_boot, step):
        rows = min(step, n_boot - start)
        draws = rng.integers(0, n_units, size=(rows, n_units))
        draws += (np.arange(rows) * n_units)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n_units)
        yield counts.reshape(rows, n_units).astype(np.float64)


def _percentiles(samples: np.ndarray, level: float) -> tuple[float | None, float | None]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], Any],
    n_units: int,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of `statistic`, resampling units with replacement.

    `statistic` is called with a block of resample counts, shape (resamples, n_units), where row r
    says how often each unit was drawn in resample r (rows sum to n_units). It returns one value
    per row (NaN or None where undefined), so a statistic written as weighted sums is evaluated
    for a whole block with matrix products. Undefined resamples are left out; (None, None) when
    none is defined.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1")
    if n_units <= 0 or n_boot <= 0:
        return None, None
    samples = []
    for weights in _weight_blocks(n_units, n_boot, seed):
        values = np.asarray(statistic(weights), dtype=np.float64).ravel()
        if values.size != weights.shape[0]:
            raise ValueError("statistic must return one value per resample (row of weights)")
        samples.append(values)
    return _percentiles(np.concatenate(samples), level)


def _bootstrap_table(
    units: _Units, measures: Callable[..., np.ndarray], *, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Point estimates (S,) and bootstrap samples (n_boot, S) of a vector of measures."""
    point = measures(*units.totals(np.ones((1, units.n_units))))[0]
    if units.n_units == 0 or n_boot <= 0:
        return point, np.full((0, point.size), np.nan)
    blocks = [measures(*units.totals(w)) for w in _weight_blocks(units.n_units, n_boot, seed)]
    return point, np.vstack(blocks)


def _scalar(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _estimate(point: float, samples: np.ndarray, level: float = 0.95) -> dict[str, float | None]:
    low, high = _percentiles(samples, level) if np.isfinite(point) else (None, None)
    return {"value": _scalar(point), "low": low, "high": high}


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
    items, _ = _index_arrays(items, workers)
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size != items.size:
        raise ValueError("vote arrays must have the same length")
    present = ~np.isnan(values)
    items, values = items[present], values[present]
    if level == "interval":
        return _interval_alpha(items, values)
    domain, codes = np.unique(values, return_inverse=True)
    units = _units(items, codes.ravel(), max(domain.size, 1))
    if units.n_units == 0:
        return None
    coincidences, _, _ = units.totals(np.ones((1, units.n_units)))
    return _scalar(_alpha(coincidences, level)[0])


def _interval_alpha(items: np.ndarray, values: np.ndarray) -> float | None:
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


def cohen_kappa_matrix(
    items: Any,
    workers: Any,
    labels: Any,
    *,
    n_workers: int,
    n_classes: int,
    min_shared: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa between every pair of workers over the items both labelled.

    Returns (kappa, shared), both n_workers × n_workers: kappa is NaN on the diagonal, where the
    pair shares fewer than `min_shared` items, and where it is undefined (both used one same
    class throughout); shared counts the items two workers both labelled. A worker's repeated
    votes on an item count once (the latest). Sparse products over classes; only workers who
    labelled at least `min_shared` items enter them.
    """
    items, workers, labels = _index_arrays(items, workers, labels)
    _check_range(workers, n_workers, "worker")
    _check_range(labels, n_classes, "label")
    items, workers, labels = _latest_answers(items, workers, labels)
    n_items = int(items.max()) + 1 if items.size else 1
    kappa = np.full((n_workers, n_workers), np.nan)
    answered = sparse.csr_matrix(
        (np.ones(items.size), (workers, items)), shape=(n_workers, n_items)
    )
    shared = np.asarray((answered @ answered.T).todense()).astype(np.int64)
    eligible = np.flatnonzero(np.bincount(workers, minlength=n_workers) >= max(min_shared, 1))
    if eligible.size < 2:
        return kappa, shared
    position = np.full(n_workers, -1)
    position[eligible] = np.arange(eligible.size)
    keep = position[workers] >= 0
    agree, chance = _cohen_counts(
        position[workers[keep]], items[keep], labels[keep], (eligible.size, n_items), n_classes
    )
    n = shared[np.ix_(eligible, eligible)].astype(np.float64)
    denominator = n * n - chance  # N² (1 - p_e): zero when both used one same class only
    with np.errstate(invalid="ignore", divide="ignore"):
        block = (n * agree - chance) / denominator
    block[(n < min_shared) | (denominator <= 0)] = np.nan
    np.fill_diagonal(block, np.nan)
    kappa[np.ix_(eligible, eligible)] = block
    return kappa, shared


def _latest_answers(
    items: np.ndarray, workers: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vote per (worker, item): the last one given (input order)."""
    key = workers * (int(items.max()) + 1 if items.size else 1) + items
    _, last_from_end = np.unique(key[::-1], return_index=True)
    latest = key.size - 1 - last_from_end
    return items[latest], workers[latest], labels[latest]


def _cohen_counts(
    rows: np.ndarray, cols: np.ndarray, classes: np.ndarray, shape: tuple[int, int], n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per worker pair: items answered alike, and Σ_k (a's k on shared items)(b's k on them)."""
    base = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=shape)
    agree = np.zeros((shape[0], shape[0]))
    chance = np.zeros_like(agree)
    for k in range(n_classes):  # loops over classes only; every product is a sparse one
        mask = classes == k
        one_class = sparse.csr_matrix((np.ones(mask.sum()), (rows[mask], cols[mask])), shape=shape)
        agree += (one_class @ one_class.T).toarray()
        marginal = (one_class @ base.T).toarray()  # [a, b]: a's k-answers on items b also did
        chance += marginal * marginal.T
    return agree, chance


def per_label_agreement(
    items: Any, workers: Any, labels: Any, *, n_items: int, n_classes: int
) -> list[dict[str, Any]]:
    """Per class: Fleiss' category kappa, one-vs-rest nominal alpha and the class's vote count.

    The category kappa is Fleiss (1971), with per-item (m_i - 1) so items may have unequal
    raters; kappa and alpha are None where the class is never or always used on pairable items.
    """
    items, _, labels = _index_arrays(items, workers, labels)
    _check_range(items, n_items, "item")
    _check_range(labels, n_classes, "label")
    return _per_label_rows(_units(items, labels, n_classes), labels)


def _per_label_rows(units: _Units, labels: np.ndarray) -> list[dict[str, Any]]:
    coincidences, _, _ = units.totals(np.ones((1, units.n_units)))
    kappa, alpha = _per_label(coincidences)
    votes = np.bincount(labels, minlength=units.n_classes)
    return [
        {
            "label": k,
            "kappa": _scalar(kappa[0, k]),
            "alpha": _scalar(alpha[0, k]),
            "n": int(votes[k]),
        }
        for k in range(units.n_classes)
    ]


def _summary_measures(levels: tuple[str, ...]) -> Callable[..., np.ndarray]:
    def measures(coincidences: np.ndarray, agreement: np.ndarray, units: np.ndarray) -> np.ndarray:
        columns = [_fleiss(coincidences, agreement, units)[:, None]]
        columns += [_alpha(coincidences, level)[:, None] for level in levels]
        columns.append(_per_label(coincidences)[0])
        return np.hstack(columns)

    return measures


def _cohen_block(
    items: np.ndarray, workers: np.ndarray, labels: np.ndarray, *, n_classes: int, min_shared: int
) -> dict[str, Any]:
    """Pairwise kappa among the most active workers (a dashboard cannot show thousands)."""
    if items.size == 0:
        return {"workers": [], "matrix": [], "shared": [], "min_shared": min_shared}
    per_worker = np.bincount(_latest_answers(items, workers, labels)[1])  # distinct items
    candidates = np.flatnonzero(per_worker >= min_shared)
    top = candidates[np.argsort(-per_worker[candidates], kind="stable")][:_COHEN_WORKERS]
    top.sort()
    position = np.full(per_worker.size, -1)
    position[top] = np.arange(top.size)
    keep = position[workers] >= 0
    kappa, shared = cohen_kappa_matrix(
        items[keep],
        position[workers[keep]],
        labels[keep],
        n_workers=top.size,
        n_classes=n_classes,
        min_shared=min_shared,
    )
    shown = np.flatnonzero(np.isfinite(kappa).any(axis=1))
    return {
        "workers": [int(w) for w in top[shown]],
        "matrix": [[_scalar(v) for v in row] for row in kappa[np.ix_(shown, shown)]],
        "shared": shared[np.ix_(shown, shown)].tolist(),
        "min_shared": min_shared,
    }


def agreement_summary(
    items: Any,
    workers: Any,
    labels: Any,
    *,
    n_items: int,
    n_workers: int,
    n_classes: int,
    ordinal: bool = False,
    n_boot: int = 200,
    seed: int = 0,
    min_shared: int = 10,
) -> dict[str, Any]:
    """Every agreement coefficient of a project with bootstrap 95% intervals, JSON-able.

    Fleiss' kappa, nominal alpha (and ordinal and interval alpha when the classes are ordered),
    per-label kappa and alpha, and the pairwise Cohen matrix of the (up to 40) workers with the
    most items, restricted to those with a pair sharing `min_shared` items. The
    bootstrap resamples pairable items; all coefficients share the same resamples.
    """
    items, workers, labels = _index_arrays(items, workers, labels)
    _check_range(items, n_items, "item")
    _check_range(workers, n_workers, "worker")
    _check_range(labels, n_classes, "label")
    levels = ("nominal", "ordinal", "interval") if ordinal else ("nominal",)
    units = _units(items, labels, n_classes)
    point, samples = _bootstrap_table(units, _summary_measures(levels), n_boot=n_boot, seed=seed)
    result: dict[str, Any] = {"fleiss": _estimate(point[0], samples[:, 0])}
    for column, level in enumerate(levels, start=1):
        result[f"alpha_{level}"] = _estimate(point[column], samples[:, column])
    first = 1 + len(levels)
    per_label = []
    for k, entry in enumerate(_per_label_rows(units, labels)):
        interval = _estimate(point[first + k], samples[:, first + k])
        per_label.append({**entry, "kappa_low": interval["low"], "kappa_high": interval["high"]})
    return {
        **result,
        "per_label": per_label,
        "cohen": _cohen_block(items, workers, labels, n_classes=n_classes, min_shared=min_shared),
        "items": int(np.unique(items).size),
        "pairable_items": units.n_units,
        "votes": int(labels.size),
    }


def epoch_seconds(timestamps: Any) -> np.ndarray:
    """Timestamps (numbers or datetime64) as float epoch seconds."""
    stamps = np.asarray(timestamps).ravel()
    if np.issubdtype(stamps.dtype, np.datetime64):
        return stamps.astype("datetime64[ns]").astype(np.int64) / 1e9
    return stamps.astype(np.float64)


def time_buckets(timestamps: Any, buckets: int) -> list[np.ndarray]:
    """Vote positions split into up to `buckets` consecutive groups of (nearly) equal size.

    Equal counts rather than equal widths, so every point of a trend rests on the same amount
    of evidence; ties in time stay in input order.
    """
    stamps = epoch_seconds(timestamps)
    if stamps.size == 0 or buckets <= 0:
        return []
    order = np.argsort(stamps, kind="stable")
    return [part for part in np.array_split(order, min(buckets, stamps.size)) if part.size]


def agreement_over_time(
    items: Any,
    workers: Any,
    labels: Any,
    timestamps: Any,
    *,
    n_classes: int,
    buckets: int = 12,
    n_boot: int = 100,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Fleiss' kappa and nominal alpha of the votes given in each time bucket, with intervals.

    Votes are split by time into equal-count buckets (epoch seconds or datetime64); agreement
    in a bucket uses only the votes given in it, so an item counts where two of its votes fall
    in the same bucket.
    """
    items, workers, labels = _index_arrays(items, workers, labels)
    stamps = epoch_seconds(timestamps)
    if stamps.size != items.size:
        raise ValueError("vote arrays must have the same length")
    _check_range(labels, n_classes, "label")
    measures = _summary_measures(("nominal",))
    trend = []
    for part in time_buckets(stamps, buckets):
        units = _units(items[part], labels[part], n_classes)
        point, samples = _bootstrap_table(units, measures, n_boot=n_boot, seed=seed)
        trend.append(
            {
                "start": float(stamps[part].min()),
                "end": float(stamps[part].max()),
                "votes": int(part.size),
                "items": int(np.unique(items[part]).size),
                "fleiss": _estimate(point[0], samples[:, 0]),
                "alpha": _estimate(point[1], samples[:, 1]),
            }
        )
    return trend
