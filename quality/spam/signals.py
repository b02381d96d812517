"""The per-worker spam and fraud signals, vectorised over sparse votes."""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.special import gammaincinv

from quality.spam.definitions import (
    BURST_GAP_SECONDS,
    CONFIDENCE,
    CONFUSION_PRIOR,
    MAX_PERIOD,
    MIN_SHARED_ITEMS,
    WorkerSignals,
)

# --- signals -----------------------------------------------------------------------------------


def spam_signals(
    *,
    item_idx: np.ndarray,
    worker_idx: np.ndarray,
    label_idx: np.ndarray,
    n_items: int,
    n_workers: int,
    n_classes: int,
    consensus: np.ndarray,
    gold_label_idx: np.ndarray,
    reliability: np.ndarray | None = None,
    duration_ms: np.ndarray | None = None,
    submitted_at: np.ndarray | None = None,
    client_key: np.ndarray | None = None,
) -> WorkerSignals:
    """Compute every spam signal for every worker (see :data:`SIGNALS`).

    Votes are in the order given unless `submitted_at` orders them; repeated (item, worker)
    pairs count as given, except in collusion, which keeps each pair's last vote.
    """
    items = _index_array(item_idx, "item_idx", n_items)
    workers = _index_array(worker_idx, "worker_idx", n_workers)
    labels = _index_array(label_idx, "label_idx", n_classes)
    if not items.shape == workers.shape == labels.shape:
        raise ValueError("item_idx, worker_idx and label_idx must have equal length")
    consensus = _per_item(consensus, "consensus", n_items, n_classes)
    gold = _per_item(gold_label_idx, "gold_label_idx", n_items, n_classes)
    order = _vote_order(workers, submitted_at)
    per_worker = np.bincount(workers, minlength=n_workers)
    confusion_counts = _confusion_counts(workers, labels, consensus[items], n_workers, n_classes)

    values: dict[str, np.ndarray] = {}
    evidence: dict[str, np.ndarray] = {}

    def put(name: str, result: tuple[np.ndarray, np.ndarray]) -> None:
        values[name], evidence[name] = result

    for share_name, kappa_name, reference in (
        ("gold_accuracy", "gold_kappa", gold[items]),
        ("consensus_agreement", "consensus_kappa", consensus[items]),
    ):
        share, kappa, counts = _agreement(workers, labels, reference, n_workers, n_classes)
        put(share_name, (share, counts))
        put(kappa_name, (kappa, counts))
    put("reliability", _reliability(reliability, per_worker, n_workers))
    put("speed_ratio", _speed_ratio(workers, duration_ms, n_workers))
    put("straightlining", _straightlining(workers, labels, consensus, n_workers, n_classes))
    put(
        "repeated_pattern",
        _repeated_pattern(workers[order], labels[order], consensus[items[order]], confusion_counts),
    )
    put("burst", _burst(workers, submitted_at, order, n_workers))
    put("shared_client", _shared_client(workers, client_key, n_workers))
    collusion, shared, partners = _collusion(
        items, workers, labels, consensus, confusion_counts, n_items, order
    )
    values["collusion"], evidence["collusion"] = collusion, shared
    return WorkerSignals(values=values, evidence=evidence, partners=partners)


def _index_array(values: object, name: str, bound: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= bound):
        raise ValueError(f"{name} out of range [0, {bound})")
    return arr


def _per_item(values: object, name: str, n_items: int, n_classes: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64).ravel()
    if arr.shape != (n_items,):
        raise ValueError(f"{name} must have one entry per item ({n_items}), got {arr.size}")
    if arr.size and (arr.min() < -1 or arr.max() >= n_classes):
        raise ValueError(f"{name} must be -1 or a class index in [0, {n_classes})")
    return arr


def _per_vote(values: object | None, name: str, n_votes: int) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.shape != (n_votes,):
        raise ValueError(f"{name} must have one entry per vote ({n_votes}), got {arr.size}")
    return arr


def _vote_order(workers: np.ndarray, submitted_at: np.ndarray | None) -> np.ndarray:
    """Votes grouped by worker, each worker's in submission order (else in the given order)."""
    positions = np.arange(workers.size)
    times = _per_vote(submitted_at, "submitted_at", workers.size)
    if times is None:
        return np.lexsort((positions, workers))
    return np.lexsort((positions, np.nan_to_num(times, nan=np.inf), workers))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _agreement(
    workers: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray,
    n_workers: int,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Share of each worker's votes equal to the per-vote reference (-1: none), Cohen's kappa.

    Kappa's chance agreement pairs the worker's label distribution with the reference's
    distribution on the same votes, so straight-liners and random answers both score 0.
    """
    known = reference >= 0
    w, said, truth = workers[known], labels[known], reference[known]
    total = np.bincount(w, minlength=n_workers)
    share = _ratio(np.bincount(w[said == truth], minlength=n_workers), total)
    k = n_classes
    flat_size = n_workers * k
    said_share = np.bincount(w * k + said, minlength=flat_size).reshape(n_workers, k)
    truth_share = np.bincount(w * k + truth, minlength=flat_size).reshape(n_workers, k)
    chance = _ratio((said_share * truth_share).sum(axis=1), total.astype(float) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(chance < 1.0 - 1e-12, (share - chance) / (1.0 - chance), 0.0)
    return share, np.where(total > 0, kappa, np.nan), total


def _reliability(
    reliability: np.ndarray | None, per_worker: np.ndarray, n_workers: int
) -> tuple[np.ndarray, np.ndarray]:
    if reliability is None:
        return np.full(n_workers, np.nan), np.zeros(n_workers, dtype=np.int64)
    values = np.asarray(reliability, dtype=np.float64).ravel()
    if values.shape != (n_workers,):
        raise ValueError(f"reliability must have one entry per worker ({n_workers})")
    return values.copy(), np.where(np.isfinite(values), per_worker, 0)


def _group_medians(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of `values` per group (NaN for empty groups), by one sort."""
    order = np.lexsort((values, groups))
    sorted_values = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    low = starts + np.maximum(counts - 1, 0) // 2
    high = starts + counts // 2
    medians = np.full(n_groups, np.nan)
    medians[has] = (sorted_values[low[has]] + sorted_values[high[has]]) / 2.0
    return medians


def _speed_ratio(
    workers: np.ndarray, duration_ms: np.ndarray | None, n_workers: int
) -> tuple[np.ndarray, np.ndarray]:
    durations = _per_vote(duration_ms, "duration_ms", workers.size)
    if durations is None:
        return np.full(n_workers, np.nan), np.zeros(n_workers, dtype=np.int64)
    known = np.isfinite(durations) & (durations >= 0)
    counts = np.bincount(workers[known], minlength=n_workers)
    medians = _group_medians(workers[known], durations[known], n_workers)
    # The typical worker, not the typical vote: one prolific fast worker cannot drag it down.
    typical = float(np.nanmedian(medians)) if (counts > 0).any() else math.nan
    if not typical > 0:
        return np.full(n_workers, np.nan), counts
    return medians / typical, counts


def _straightlining(
    workers: np.ndarray,
    labels: np.ndarray,
    consensus: np.ndarray,
    n_workers: int,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(workers * n_classes + labels, minlength=n_workers * n_classes).reshape(
        n_workers, n_classes
    )
    total = counts.sum(axis=1)
    top = counts.argmax(axis=1)
    share = _ratio(counts[np.arange(n_workers), top], total)
    # Class prior from consensus, smoothed so a class consensus never chose stays finite.
    known = consensus[consensus >= 0]
    prior = (np.bincount(known, minlength=n_classes) + 1.0) / (known.size + n_classes)
    # 0 = the top label is used as often as consensus uses it, 1 = it is the only label used.
    return (share - prior[top]) / (1.0 - prior[top]), total


def _confusion_counts(
    workers: np.ndarray,
    labels: np.ndarray,
    truth: np.ndarray,
    n_workers: int,
    n_classes: int,
) -> np.ndarray:
    """counts[w, t, c]: votes of worker w answering c on items whose consensus is t."""
    known = truth >= 0
    k = n_classes
    flat = (workers[known] * k + truth[known]) * k + labels[known]
    return np.bincount(flat, minlength=n_workers * k * k).reshape(n_workers, k, k).astype(float)


def _repeated_pattern(
    workers: np.ndarray,
    labels: np.ndarray,
    truth: np.ndarray,
    confusion_counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Max over lags 1..MAX_PERIOD of the share of expected non-repeats that did not happen.

    The expected share of repeats comes from the worker's own confusion against consensus
    (unsmoothed, i.e. their answers shuffled among items of the same consensus class): a
    straight-liner or an honest worker on items sorted by class repeats as much as expected;
    a worker cycling through labels does not.
    """
    n_workers = confusion_counts.shape[0]
    rows = confusion_counts.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        habit = confusion_counts / np.where(rows > 0, rows, 1.0)
    # same[w, t1, t2]: chance that two of w's answers agree, on items of consensus t1 and t2.
    same = np.einsum("wac,wbc->wab", habit, habit)
    best = np.full(n_workers, -np.inf)
    known = truth >= 0
    evidence = np.zeros(n_workers, dtype=np.int64)
    for lag in range(1, MAX_PERIOD + 1):
        if workers.size <= lag:
            break
        now, before = slice(lag, None), slice(None, -lag)
        pair = (workers[now] == workers[before]) & known[now] & known[before]
        w = workers[now][pair]
        observed = np.bincount(
            w, weights=labels[now][pair] == labels[before][pair], minlength=n_workers
        )
        expected = np.bincount(
            w, weights=same[w, truth[now][pair], truth[before][pair]], minlength=n_workers
        )
        pairs = np.bincount(w, minlength=n_workers)
        if lag == 1:
            evidence = pairs + (pairs > 0)  # answers behind the lag-1 pairs
        excess = _excess_bound(pairs - observed, pairs - expected)
        best = np.where(pairs > 0, np.maximum(best, excess), best)
    return np.where(np.isfinite(best), best, np.nan), evidence


def _burst(
    workers: np.ndarray, submitted_at: np.ndarray | None, order: np.ndarray, n_workers: int
) -> tuple[np.ndarray, np.ndarray]:
    times = _per_vote(submitted_at, "submitted_at", workers.size)
    if times is None:
        return np.full(n_workers, np.nan), np.zeros(n_workers, dtype=np.int64)
    w, t = workers[order], times[order]
    pair = (w[1:] == w[:-1]) & np.isfinite(t[1:]) & np.isfinite(t[:-1])
    gaps = np.bincount(w[1:][pair], minlength=n_workers)
    fast = np.bincount(
        w[1:][pair], weights=(t[1:] - t[:-1])[pair] < BURST_GAP_SECONDS, minlength=n_workers
    )
    return _ratio(fast, gaps), gaps


def _shared_client(
    workers: np.ndarray, client_key: np.ndarray | None, n_workers: int
) -> tuple[np.ndarray, np.ndarray]:
    if client_key is None:
        return np.full(n_workers, np.nan), np.zeros(n_workers, dtype=np.int64)
    keys = np.asarray(client_key, dtype=np.int64).ravel()
    if keys.shape != workers.shape:
        raise ValueError(f"client_key must have one entry per vote ({workers.size})")
    known = keys >= 0
    counts = np.bincount(workers[known], minlength=n_workers)
    if not known.any():
        return np.full(n_workers, np.nan), counts
    _, key_col = np.unique(keys[known], return_inverse=True)
    uses = sparse.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.int8), (workers[known], key_col)),
        shape=(n_workers, int(key_col.max()) + 1),
    )
    uses.data[:] = 1  # duplicates were summed: back to "used this key"
    together = (uses @ uses.T).tocsr()
    together.data[:] = 1
    others = np.asarray(together.sum(axis=1)).ravel() - (counts > 0)
    return np.where(counts > 0, others, np.nan), counts


def _collusion(
    items: np.ndarray,
    workers: np.ndarray,
    labels: np.ndarray,
    consensus: np.ndarray,
    confusion_counts: np.ndarray,
    n_items: int,
    order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each worker's most significant excess agreement with another worker, by sparse products.

    For every pair sharing at least MIN_SHARED_ITEMS items with a consensus, compare the
    observed disagreements D with the disagreements their (smoothed) confusion matrices
    against consensus predict; the value is 1 - (upper 95% Poisson bound of D) / expected D.
    """
    n_workers = confusion_counts.shape[0]
    values = np.full(n_workers, np.nan)
    shared_best = np.zeros(n_workers, dtype=np.int64)
    partners = np.full(n_workers, -1, dtype=np.int64)
    # Keep the last vote of each (worker, item) with a consensus, in submission order.
    keep = order[consensus[items[order]] >= 0]
    _, last = np.unique((workers[keep] * n_items + items[keep])[::-1], return_index=True)
    keep = keep[::-1][last]
    w, i = workers[keep], items[keep]
    seen = sparse.csr_matrix((np.ones(w.size, dtype=np.int32), (w, i)), shape=(n_workers, n_items))
    shared = (seen @ seen.T).tocoo()
    candidate = (shared.data >= MIN_SHARED_ITEMS) & (shared.row != shared.col)
    rows, cols = shared.row[candidate].astype(np.int64), shared.col[candidate].astype(np.int64)
    if rows.size == 0:
        return values, shared_best, partners
    n_shared = shared.data[candidate].astype(np.float64)
    # Only workers with a candidate partner take part in the heavier products.
    involved = np.isin(w, rows)
    keep = keep[involved]
    n_agreed, n_expected = _pair_agreement(
        workers[keep], items[keep], labels[keep], consensus, confusion_counts, rows, cols
    )
    excess = _excess_bound(n_shared - n_agreed, n_shared - n_expected)
    best = np.lexsort((-n_shared, -excess, rows))
    first = best[np.r_[True, rows[best][1:] != rows[best][:-1]]]
    values[rows[first]] = excess[first]
    shared_best[rows[first]] = n_shared[first].astype(np.int64)
    partners[rows[first]] = cols[first]
    return values, shared_best, partners


def _pair_agreement(
    w: np.ndarray,
    i: np.ndarray,
    c: np.ndarray,
    consensus: np.ndarray,
    confusion_counts: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected agreements of the (rows, cols) worker pairs on their shared items.

    expected[u, v] = sum over shared items of sum_c P_u(c | t) P_v(c | t), t the consensus,
    P a worker's confusion against consensus pulled towards the crowd's by CONFUSION_PRIOR.
    """
    n_workers, k, _ = confusion_counts.shape
    n_items = consensus.size
    crowd = confusion_counts.sum(axis=0) + 1.0
    crowd /= crowd.sum(axis=1, keepdims=True)
    habit = confusion_counts + CONFUSION_PRIOR * crowd
    habit /= habit.sum(axis=2, keepdims=True)
    shape = (n_workers, n_items * k)
    said = sparse.csr_matrix((np.ones(w.size, dtype=np.int32), (w, i * k + c)), shape=shape)
    agreed = said @ said.T
    weights = habit[w, consensus[i], :]  # (votes x k)
    columns = (i[:, None] * k + np.arange(k)).ravel()
    likely = sparse.csr_matrix((weights.ravel(), (np.repeat(w, k), columns)), shape=shape)
    expected = likely @ likely.T
    return _values_at(agreed, rows, cols), _values_at(expected, rows, cols)


def _excess_bound(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Lower confidence bound of 1 - observed/expected mismatches, clipped to [-1, 1].

    The observed count gets its one-sided upper Poisson bound, so a handful of expected
    mismatches that did not happen proves nothing, while dozens do (1 = none happened).
    """
    upper = gammaincinv(np.asarray(observed, dtype=np.float64) + 1.0, CONFIDENCE)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(
            expected > 1e-9, 1.0 - upper / np.where(expected > 1e-9, expected, 1), 0.0
        )
    return np.clip(excess, -1.0, 1.0)


def _values_at(matrix: sparse.spmatrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows, cols] for many (row, col) pairs, by binary search in sorted CSR rows."""
    csr = sparse.csr_matrix(matrix)
    csr.sum_duplicates()
    csr.sort_indices()
    n_cols = csr.shape[1]
    flat = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr)) * n_cols
    flat += csr.indices
    wanted = rows.astype(np.int64) * n_cols + cols
    out = np.zeros(wanted.size)
    if flat.size == 0:
        return out
    at = np.minimum(np.searchsorted(flat, wanted), flat.size - 1)
    hit = flat[at] == wanted
    out[hit] = csr.data[at[hit]]
    return out
