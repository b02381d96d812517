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

The coincidence and alpha core (`krippendorff_alpha`, `Units`, ...) lives in
`annotation.task_types._reliability`, shared with the task types; this module adds the bootstrap,
Cohen's kappa, per-label figures and trends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from scipy import sparse

from annotation.task_types._reliability import (
    LEVELS,
    Units,
    alpha_from_coincidences,
    check_range,
    fleiss_from_totals,
    index_arrays,
    krippendorff_alpha,
    per_label_from_coincidences,
    scalar,
    units_build,
)

__all__ = [
    "LEVELS",
    "agreement_over_time",
    "agreement_summary",
    "bootstrap_interval",
    "cohen_kappa_matrix",
    "epoch_seconds",
    "krippendorff_alpha",
    "per_label_agreement",
    "time_buckets",
]

# Cells of one block of bootstrap weights (resamples × units): about 32 MB of float64.
_BLOCK_CELLS = 4_000_000
_COHEN_WORKERS = 40


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
    units: Units, measures: Callable[..., np.ndarray], *, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Point estimates (S,) and bootstrap samples (n_boot, S) of a vector of measures."""
    point = measures(*units.totals(np.ones((1, units.n_units))))[0]
    if units.n_units == 0 or n_boot <= 0:
        return point, np.full((0, point.size), np.nan)
    blocks = [measures(*units.totals(w)) for w in _weight_blocks(units.n_units, n_boot, seed)]
    return point, np.vstack(blocks)


def _estimate(point: float, samples: np.ndarray, level: float = 0.95) -> dict[str, float | None]:
    low, high = _percentiles(samples, level) if np.isfinite(point) else (None, None)
    return {"value": scalar(point), "low": low, "high": high}


# ---------------------------------------------------------------- coefficients


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
    items, workers, labels = index_arrays(items, workers, labels)
    check_range(workers, n_workers, "worker")
    check_range(labels, n_classes, "label")
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
    items, _, labels = index_arrays(items, workers, labels)
    check_range(items, n_items, "item")
    check_range(labels, n_classes, "label")
    return _per_label_rows(units_build(items, labels, n_classes), labels)


def _per_label_rows(units: Units, labels: np.ndarray) -> list[dict[str, Any]]:
    coincidences, _, _ = units.totals(np.ones((1, units.n_units)))
    kappa, alpha = per_label_from_coincidences(coincidences)
    votes = np.bincount(labels, minlength=units.n_classes)
    return [
        {
            "label": k,
            "kappa": scalar(kappa[0, k]),
            "alpha": scalar(alpha[0, k]),
            "n": int(votes[k]),
        }
        for k in range(units.n_classes)
    ]


def _summary_measures(levels: tuple[str, ...]) -> Callable[..., np.ndarray]:
    def measures(coincidences: np.ndarray, agreement: np.ndarray, units: np.ndarray) -> np.ndarray:
        columns = [fleiss_from_totals(coincidences, agreement, units)[:, None]]
        columns += [alpha_from_coincidences(coincidences, level)[:, None] for level in levels]
        columns.append(per_label_from_coincidences(coincidences)[0])
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
        "matrix": [[scalar(v) for v in row] for row in kappa[np.ix_(shown, shown)]],
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
    items, workers, labels = index_arrays(items, workers, labels)
    check_range(items, n_items, "item")
    check_range(workers, n_workers, "worker")
    check_range(labels, n_classes, "label")
    levels = ("nominal", "ordinal", "interval") if ordinal else ("nominal",)
    units = units_build(items, labels, n_classes)
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
    items, workers, labels = index_arrays(items, workers, labels)
    stamps = epoch_seconds(timestamps)
    if stamps.size != items.size:
        raise ValueError("vote arrays must have the same length")
    check_range(labels, n_classes, "label")
    measures = _summary_measures(("nominal",))
    trend = []
    for part in time_buckets(stamps, buckets):
        units = units_build(items[part], labels[part], n_classes)
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
