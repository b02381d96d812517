from __future__ import annotations

import functools
import json

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from quality.agreement import (
    agreement_over_time,
    agreement_summary,
    bootstrap_interval,
    cohen_kappa_matrix,
    krippendorff_alpha,
    per_label_agreement,
)
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal
from tests.quality.crowd_data import DATASETS, need_crowd_data, read_rows


@functools.cache
def load(name: str) -> dict:
    """Votes as index arrays; items and workers re-keyed in first-seen order, classes sorted."""
    rows, _ = read_rows(name)
    items: dict[str, int] = {}
    workers: dict[str, int] = {}
    classes = {c: i for i, c in enumerate(sorted({r[2] for r in rows}))}
    return {
        "items": np.array([items.setdefault(r[0], len(items)) for r in rows]),
        "workers": np.array([workers.setdefault(r[1], len(workers)) for r in rows]),
        "labels": np.array([classes[r[2]] for r in rows]),
        "n_items": len(items),
        "n_workers": len(workers),
        "n_classes": len(classes),
    }


def counts_of(items, labels, n_items, n_classes) -> np.ndarray:
    counts = np.zeros((n_items, n_classes))
    np.add.at(counts, (items, labels), 1)
    return counts


def random_votes(seed: int, *, raters=6, units=60, n_classes=4, noise=0.4, missing=0.4):
    """Reliability data (raters × units, NaN = missing) and the same votes as sparse arrays."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, units)
    data = np.where(
        rng.random((raters, units)) < noise, rng.integers(0, n_classes, (raters, units)), truth
    ).astype(float)
    data[rng.random((raters, units)) < missing] = np.nan
    workers, items = np.nonzero(~np.isnan(data))
    return data, items, workers, data[workers, items].astype(int)


# ------------------------------------------------------------------ Krippendorff's alpha


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_krippendorff_alpha_matches_the_package_with_missing_data(level, seed):
    data, items, workers, labels = random_votes(seed)

    ours = krippendorff_alpha(items, workers, labels, level=level)

    assert ours == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement=level), abs=1e-9
    )


@pytest.mark.parametrize("level", ["ordinal", "interval"])
def test_krippendorff_alpha_uses_the_values_themselves_not_their_codes(level):
    data, items, workers, _ = random_votes(7, n_classes=5)
    spread = np.array([-3.5, 0.0, 0.25, 10.0, 1e3])  # uneven gaps change interval, not ordinal
    values_matrix = np.where(np.isnan(data), np.nan, spread[np.nan_to_num(data).astype(int)])
    values = values_matrix[workers, items]

    ours = krippendorff_alpha(items, workers, values, level=level)

    expected = krippendorff.alpha(reliability_data=values_matrix, level_of_measurement=level)
    assert ours == pytest.approx(expected, abs=1e-9)
    codes = krippendorff_alpha(items, workers, data[workers, items], level=level)
    assert (ours == pytest.approx(codes, abs=1e-12)) is (level == "ordinal")


def test_krippendorff_alpha_treats_nan_values_as_missing():
    data, items, workers, labels = random_votes(11, missing=0.0)
    values = labels.astype(float)
    gone = np.random.default_rng(0).random(values.size) < 0.3
    values[gone] = np.nan
    data[workers[gone], items[gone]] = np.nan

    ours = krippendorff_alpha(items, workers, values, level="ordinal")

    assert ours == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"), abs=1e-9
    )


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_is_none_without_pairs_one_value_or_any_data(level):
    one_rater_each = krippendorff_alpha([0, 1, 2], [0, 1, 0], [0, 1, 2], level=level)
    one_class = krippendorff_alpha([0, 0, 1, 1, 1], [0, 1, 0, 1, 2], [2, 2, 2, 2, 2], level=level)
    all_missing = krippendorff_alpha([0, 0, 1], [0, 1, 0], [np.nan] * 3, level=level)
    nothing = krippendorff_alpha([], [], [], level=level)

    assert (one_rater_each, one_class, all_missing, nothing) == (None, None, None, None)


def test_krippendorff_alpha_rejects_an_unknown_level():
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([0, 0], [0, 1], [0, 1], level="ratio")


@pytest.mark.parametrize("name", DATASETS)
def test_krippendorff_alpha_matches_the_package_on_the_shared_datasets(name):
    need_crowd_data()
    d = load(name)
    counts = counts_of(d["items"], d["labels"], d["n_items"], d["n_classes"])
    levels = ["nominal", "ordinal", "interval"] if name == "web" else ["nominal"]

    for level in levels:
        ours = krippendorff_alpha(d["items"], d["workers"], d["labels"], level=level)

        # value_counts keeps a worker's repeated votes on an item (adult has some), as we do.
        expected = krippendorff.alpha(value_counts=counts, level_of_measurement=level)
        assert ours == pytest.approx(expected, abs=1e-9), level
        assert 0.0 < ours < 1.0


# ------------------------------------------------------------------ Fleiss and Cohen


@pytest.mark.parametrize("name", ["bluebirds", "rte", "dog", "product"])
def test_summary_fleiss_matches_statsmodels_on_equal_rater_datasets(name):
    need_crowd_data()
    d = load(name)
    counts = counts_of(d["items"], d["labels"], d["n_items"], d["n_classes"])
    assert len(set(counts.sum(axis=1))) == 1

    summary = agreement_summary(
        d["items"],
        d["workers"],
        d["labels"],
        n_items=d["n_items"],
        n_workers=d["n_workers"],
        n_classes=d["n_classes"],
        n_boot=20,
    )

    expected = statsmodels_fleiss_kappa(counts, method="fleiss")
    assert summary["fleiss"]["value"] == pytest.approx(expected, abs=1e-9)
    assert summary["alpha_nominal"]["value"] == pytest.approx(
        krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"), abs=1e-9
    )


def test_summary_agrees_with_the_count_matrix_coefficients_for_unequal_raters():
    _, items, workers, labels = random_votes(5, raters=7, units=120, missing=0.5)
    counts = counts_of(items, labels, 120, 4)
    assert len(set(counts.sum(axis=1))) > 2

    summary = agreement_summary(
        items, workers, labels, n_items=120, n_workers=7, n_classes=4, n_boot=10
    )

    assert summary["fleiss"]["value"] == pytest.approx(fleiss_kappa(counts), abs=1e-12)
    assert summary["alpha_nominal"]["value"] == pytest.approx(
        krippendorff_alpha_nominal(counts), abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_kappa_matrix_matches_sklearn_for_every_pair(seed):
    data, items, workers, labels = random_votes(seed, raters=8, units=80, missing=0.5)

    kappa, shared = cohen_kappa_matrix(
        items, workers, labels, n_workers=8, n_classes=4, min_shared=12
    )

    checked = 0
    for a in range(8):
        for b in range(8):
            both = ~np.isnan(data[a]) & ~np.isnan(data[b])
            assert shared[a, b] == both.sum()
            if a == b or both.sum() < 12:
                assert np.isnan(kappa[a, b])
                continue
            expected = cohen_kappa_score(data[a][both], data[b][both])
            assert kappa[a, b] == pytest.approx(expected, abs=1e-9)
            checked += 1
    assert checked >= 20


def test_cohen_kappa_matrix_matches_sklearn_on_the_rte_dataset():
    need_crowd_data()
    d = load("rte")
    answers: dict[int, dict[int, int]] = {}
    for item, worker, label in zip(d["items"], d["workers"], d["labels"], strict=True):
        answers.setdefault(int(worker), {})[int(item)] = int(label)

    kappa, shared = cohen_kappa_matrix(
        d["items"], d["workers"], d["labels"], n_workers=d["n_workers"], n_classes=2
    )

    pairs = np.argwhere(np.isfinite(kappa))
    assert len(pairs) >= 50
    assert np.all(shared[pairs[:, 0], pairs[:, 1]] >= 10)
    for a, b in pairs[:: max(1, len(pairs) // 150)]:
        common = sorted(answers[a].keys() & answers[b].keys())
        expected = cohen_kappa_score(
            [answers[a][i] for i in common], [answers[b][i] for i in common]
        )
        assert kappa[a, b] == pytest.approx(expected, abs=1e-9)


def test_cohen_kappa_matrix_keeps_a_workers_latest_vote_and_flags_undefined_pairs():
    # Worker 0 first says 1 on item 0, then corrects to 0; worker 2 and 3 always say 0.
    items = [0, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
    workers = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    labels = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]

    kappa, shared = cohen_kappa_matrix(
        items, workers, labels, n_workers=5, n_classes=2, min_shared=4
    )

    assert kappa[0, 1] == pytest.approx(1.0)
    assert shared[0, 1] == 4
    assert kappa[0, 2] == pytest.approx(cohen_kappa_score([0, 1, 0, 1], [0, 0, 0, 0]))
    assert np.isnan(kappa[2, 3])  # both used one class only: kappa undefined (sklearn: nan)
    assert np.isnan(kappa[4]).all()
    assert shared[4].sum() == 0
    assert np.isnan(np.diag(kappa)).all()


def test_cohen_kappa_matrix_handles_two_thousand_workers():
    rng = np.random.default_rng(3)
    n_items, n_workers = 20_000, 2_000
    items = np.repeat(np.arange(n_items), 10)
    workers = rng.integers(0, n_workers, items.size)
    truth = rng.integers(0, 3, n_items)
    labels = np.where(rng.random(items.size) < 0.8, truth[items], rng.integers(0, 3, items.size))

    kappa, shared = cohen_kappa_matrix(
        items, workers, labels, n_workers=n_workers, n_classes=3, min_shared=5
    )

    assert kappa.shape == shared.shape == (n_workers, n_workers)
    a, b = np.argwhere(np.isfinite(kappa))[0]
    first = {i: lab for i, w, lab in zip(items, workers, labels, strict=True) if w == a}
    second = {i: lab for i, w, lab in zip(items, workers, labels, strict=True) if w == b}
    common = sorted(first.keys() & second.keys())
    assert kappa[a, b] == pytest.approx(
        cohen_kappa_score([first[i] for i in common], [second[i] for i in common]), abs=1e-9
    )
    assert np.nanmean(kappa) > 0.5


# ------------------------------------------------------------------ per-label agreement


def fleiss_category_kappa(counts: np.ndarray) -> np.ndarray:
    """Fleiss (1971) per-category kappa, equal raters: 1 - Σ n_ij(m - n_ij) / (N m (m-1) p q)."""
    n_items, m = counts.shape[0], counts.sum(axis=1)[0]
    p = counts.sum(axis=0) / (n_items * m)
    return 1 - (counts * (m - counts)).sum(axis=0) / (n_items * m * (m - 1) * p * (1 - p))


@pytest.mark.parametrize("name", ["dog", "rte"])
def test_per_label_agreement_matches_fleiss_category_kappa_and_one_vs_rest_alpha(name):
    need_crowd_data()
    d = load(name)
    counts = counts_of(d["items"], d["labels"], d["n_items"], d["n_classes"])

    rows = per_label_agreement(
        d["items"], d["workers"], d["labels"], n_items=d["n_items"], n_classes=d["n_classes"]
    )

    expected_kappa = fleiss_category_kappa(counts)
    for k, row in enumerate(rows):
        binary = np.column_stack([counts[:, k], counts.sum(axis=1) - counts[:, k]])
        assert row["label"] == k
        assert row["n"] == counts[:, k].sum()
        assert row["kappa"] == pytest.approx(expected_kappa[k], abs=1e-9)
        assert row["alpha"] == pytest.approx(
            krippendorff.alpha(value_counts=binary, level_of_measurement="nominal"), abs=1e-9
        )
    # Fleiss' kappa is the p·q-weighted mean of the category kappas.
    p = counts.sum(axis=0) / counts.sum()
    overall = (
        sum(p[k] * (1 - p[k]) * rows[k]["kappa"] for k in range(len(rows))) / (p * (1 - p)).sum()
    )
    assert overall == pytest.approx(statsmodels_fleiss_kappa(counts), abs=1e-9)


def test_per_label_agreement_is_none_for_unused_or_universal_classes():
    rows = per_label_agreement([0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1], n_items=2, n_classes=3)

    assert [(r["kappa"], r["alpha"], r["n"]) for r in rows] == [
        (None, None, 0),
        (None, None, 4),
        (None, None, 0),
    ]


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_interval_of_a_mean_has_the_normal_width():
    rng = np.random.default_rng(8)
    data = rng.normal(3.0, 2.0, 2_000)

    low, high = bootstrap_interval(lambda w: w @ data / w.sum(axis=1), data.size, n_boot=400)

    assert low < data.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * data.std() / np.sqrt(data.size), rel=0.15)


def test_bootstrap_interval_draws_every_unit_with_replacement_uniformly():
    seen = []

    def record(weights):
        seen.append(weights.copy())
        return weights[:, 0]

    bootstrap_interval(record, 6, n_boot=3_000, seed=1)

    weights = np.vstack(seen)
    assert weights.shape == (3_000, 6)
    assert np.all(weights.sum(axis=1) == 6)
    # Multinomial(6, 1/6 each): every unit drawn once per resample on average, variance 5/6.
    np.testing.assert_allclose(weights.mean(axis=0), 1.0, atol=0.06)
    np.testing.assert_allclose(weights.var(axis=0), 5 / 6, atol=0.08)


def test_bootstrap_interval_is_seeded_and_skips_undefined_resamples():
    def flaky(weights):
        values = weights[:, 0] - weights[:, 1]
        return [None if w[2] == 0 else v for w, v in zip(weights, values, strict=True)]

    first = bootstrap_interval(flaky, 5, n_boot=50, seed=3)

    assert first == bootstrap_interval(flaky, 5, n_boot=50, seed=3)
    assert first != bootstrap_interval(flaky, 5, n_boot=50, seed=4)
    assert bootstrap_interval(lambda w: np.full(len(w), np.nan), 5) == (None, None)
    assert bootstrap_interval(lambda w: w.sum(axis=1), 0) == (None, None)


def test_summary_intervals_equal_resampling_the_items_themselves():
    # The summary's sufficient statistics must give what the references give on each resample.
    _, items, workers, labels = random_votes(21, raters=5, units=90, n_classes=4, missing=0.3)
    counts = counts_of(items, labels, 90, 4)
    pairable = counts[counts.sum(axis=1) >= 2]  # resampled units: items with two votes, in order

    def reference(level):
        def statistic(weights):
            out = []
            for w in weights.astype(int):
                table = np.repeat(pairable, w, axis=0)
                if level == "fleiss":
                    out.append(fleiss_kappa(table))
                else:
                    out.append(krippendorff.alpha(value_counts=table, level_of_measurement=level))
            return out

        return statistic

    summary = agreement_summary(
        items,
        workers,
        labels,
        n_items=90,
        n_workers=5,
        n_classes=4,
        ordinal=True,
        n_boot=60,
        seed=5,
    )

    for key, level in [
        ("fleiss", "fleiss"),
        ("alpha_nominal", "nominal"),
        ("alpha_ordinal", "ordinal"),
        ("alpha_interval", "interval"),
    ]:
        low, high = bootstrap_interval(reference(level), len(pairable), n_boot=60, seed=5)
        assert summary[key]["low"] == pytest.approx(low, abs=1e-9), key
        assert summary[key]["high"] == pytest.approx(high, abs=1e-9), key


@pytest.mark.parametrize("name", ["dog", "web", "rte"])
def test_summary_intervals_contain_the_estimate_on_real_data(name):
    need_crowd_data()
    d = load(name)

    summary = agreement_summary(
        d["items"],
        d["workers"],
        d["labels"],
        n_items=d["n_items"],
        n_workers=d["n_workers"],
        n_classes=d["n_classes"],
        ordinal=name == "web",
    )

    keys = ["fleiss", "alpha_nominal"] + (
        ["alpha_ordinal", "alpha_interval"] if name == "web" else []
    )
    for key in keys:
        estimate = summary[key]
        assert estimate["low"] < estimate["value"] < estimate["high"], key
        assert estimate["high"] - estimate["low"] < 0.2
    for row in summary["per_label"]:
        assert row["kappa_low"] <= row["kappa"] <= row["kappa_high"]
    assert summary["votes"] == d["items"].size
    assert summary["items"] == d["n_items"]
    json.dumps(summary, allow_nan=False)


def test_summary_interval_narrows_with_more_items():
    need_crowd_data()
    d = load("dog")
    widths = []
    for n_items in (100, 800):
        keep = d["items"] < n_items

        summary = agreement_summary(
            d["items"][keep],
            d["workers"][keep],
            d["labels"][keep],
            n_items=n_items,
            n_workers=d["n_workers"],
            n_classes=d["n_classes"],
        )

        widths.append(summary["fleiss"]["high"] - summary["fleiss"]["low"])
    assert widths[1] < 0.6 * widths[0]  # ≈ 1/sqrt(8) ≈ 0.35 expected


def test_summary_cohen_block_lists_the_workers_shown_with_a_square_matrix():
    need_crowd_data()
    d = load("dog")

    cohen = agreement_summary(
        d["items"],
        d["workers"],
        d["labels"],
        n_items=d["n_items"],
        n_workers=d["n_workers"],
        n_classes=d["n_classes"],
        n_boot=10,
        min_shared=20,
    )["cohen"]

    full, _ = cohen_kappa_matrix(
        d["items"],
        d["workers"],
        d["labels"],
        n_workers=d["n_workers"],
        n_classes=d["n_classes"],
        min_shared=20,
    )
    shown = cohen["workers"]
    assert 2 <= len(shown) <= 40
    assert cohen["min_shared"] == 20
    assert len(cohen["matrix"]) == len(shown)
    assert all(len(r) == len(shown) for r in cohen["matrix"])
    expected = full[np.ix_(shown, shown)]
    got = np.array([[np.nan if v is None else v for v in row] for row in cohen["matrix"]])
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_summary_of_no_pairable_votes_has_no_values():
    summary = agreement_summary(
        [0, 1, 2], [0, 1, 2], [0, 1, 0], n_items=3, n_workers=3, n_classes=2, ordinal=True
    )

    assert summary["fleiss"] == {"value": None, "low": None, "high": None}
    assert summary["alpha_ordinal"] == {"value": None, "low": None, "high": None}
    assert summary["cohen"]["workers"] == []
    assert (summary["items"], summary["pairable_items"], summary["votes"]) == (3, 0, 3)


# ------------------------------------------------------------------ over time


def test_agreement_over_time_finds_a_drop_and_matches_each_bucket():
    rng = np.random.default_rng(4)
    n_items, raters = 1_200, 4
    items = np.repeat(np.arange(n_items), raters)
    workers = np.tile(np.arange(raters), n_items)
    truth = rng.integers(0, 3, n_items)
    noise = np.where(items < n_items // 2, 0.1, 0.6)  # the second half is much noisier
    labels = np.where(rng.random(items.size) < noise, rng.integers(0, 3, items.size), truth[items])
    stamps = 1_700_000_000 + items * 60.0 + workers  # items labelled one after another

    trend = agreement_over_time(items, workers, labels, stamps, n_classes=3, buckets=4)

    assert [t["votes"] for t in trend] == [1_200] * 4
    assert [t["items"] for t in trend] == [300] * 4
    assert all(t["start"] <= t["end"] < u["start"] for t, u in zip(trend, trend[1:], strict=False))
    for t in trend:
        part = (stamps >= t["start"]) & (stamps <= t["end"])
        counts = counts_of(items[part], labels[part], n_items, 3)
        assert t["fleiss"]["value"] == pytest.approx(fleiss_kappa(counts), abs=1e-12)
        assert t["alpha"]["value"] == pytest.approx(krippendorff_alpha_nominal(counts), abs=1e-12)
        assert t["fleiss"]["low"] < t["fleiss"]["value"] < t["fleiss"]["high"]
    assert trend[1]["fleiss"]["low"] > trend[2]["fleiss"]["high"]  # the drop is beyond noise


def test_agreement_over_time_accepts_datetimes_and_empty_input():
    stamps = np.array(
        ["2026-01-01T00:00", "2026-01-01T00:01", "2026-01-02T00:00", "2026-01-02T00:05"],
        dtype="datetime64[s]",
    )

    trend = agreement_over_time(
        [0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 0], stamps, n_classes=2, buckets=2
    )

    assert trend[0]["start"] == pytest.approx(1767225600.0)
    assert trend[1]["end"] == pytest.approx(1767225600.0 + 86400 + 300)
    assert agreement_over_time([], [], [], [], n_classes=2) == []
