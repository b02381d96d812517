"""Release splits: validation, determinism, stratification, group-awareness, stability across
versions, the split column in the files and the manifest, and a 50k-item benchmark.

What is guaranteed (quality.releases.splits): the same inputs give the same split; within a
label stratum every positive-ratio split gets a group before any gets a second (a label with 3
items lands in all 3 splits at 80/10/10); each split's count per stratum is within the largest
group's size of its target; an item keeps its split in later versions with the same config.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections import Counter, defaultdict

import numpy as np
import pytest
from django.core.files.storage import default_storage

from annotation.models import Annotation, Item
from annotation.task_types import task_config_of
from core.exceptions import ApplicationError
from quality.releases import formats, release_build
from quality.releases.splits import SPLITS, SplitCollector, split_clean
from quality.releases.writing import export_rows
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.quality.factories import make_release

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def assign(items, *, seed=42, ratios=None, group_key="", previous=None, labels=()):
    """{item id: split} for [(item id, data, label)], as a release build assigns them."""
    config = split_clean({"seed": seed, "ratios": ratios or RATIOS, "group_key": group_key})
    collector = SplitCollector(config=config, labels=list(labels))
    for item_id, data, label in items:
        collector.add(item_id=item_id, data=data, stratum=label)
    prev = None
    if previous:
        ids = np.array(sorted(previous), dtype=np.int64)
        prev = (ids, np.array([SPLITS.index(previous[i]) for i in ids], dtype=np.int8))
    assigned = collector.assign(prev)
    return {item_id: SPLITS[k] for (item_id, _d, _l), k in zip(items, assigned, strict=True)}


def labelled(counts, start=1):
    """Items with ids from `start`, labels by {label: count}, interleaved by a fixed shuffle."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    random.Random(0).shuffle(labels)
    return [(start + i, {"text": f"t{i}"}, label) for i, label in enumerate(labels)]


# --- validation ---------------------------------------------------------------------------------


def test_split_clean_defaults_and_is_idempotent():
    default = {"seed": 42, "ratios": RATIOS, "group_key": ""}
    assert split_clean(None) == {}
    assert split_clean({}) == {}
    assert split_clean(False) == {}
    assert split_clean(True) == default
    assert split_clean({"seed": 7}) == {**default, "seed": 7}
    cleaned = split_clean(
        {"ratios": {"train": 0.7, "validation": 0.3, "test": 0}, "group_key": " doc "}
    )
    assert cleaned == {
        "seed": 42,
        "ratios": {"train": 0.7, "validation": 0.3, "test": 0.0},
        "group_key": "doc",
    }
    assert split_clean(cleaned) == cleaned


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"seed": -1}, "split.seed"),
        ({"seed": "42"}, "split.seed"),
        ({"seed": 1.5}, "split.seed"),
        ({"ratios": [0.8, 0.1, 0.1]}, "split.ratios"),
        ({"ratios": {"train": 0.8, "validation": 0.2}}, "split.ratios.test"),
        ({"ratios": {"train": 1.2, "validation": -0.1, "test": -0.1}}, "split.ratios.train"),
        ({"ratios": {"train": "a", "validation": 0.5, "test": 0.5}}, "split.ratios.train"),
        ({"ratios": {"train": 0.5, "validation": 0.2, "test": 0.2}}, "split.ratios"),
        ({"ratios": {**RATIOS, "dev": 0.0}}, "split.ratios.dev"),
        ({"group_key": 3}, "split.group_key"),
        ({"shuffle": True}, "split.shuffle"),
        ("80/10/10", "split"),
    ],
)
def test_split_clean_names_the_bad_field(raw, field):
    with pytest.raises(ApplicationError) as caught:
        split_clean(raw)
    assert list(caught.value.fields) == [field]


# --- the assignment -----------------------------------------------------------------------------


def test_same_seed_gives_the_same_split_and_another_seed_another():
    items = labelled({"a": 200, "b": 100})

    first, again = assign(items), assign(list(items))
    other = assign(items, seed=43)

    assert first == again
    assert sum(first[i] != other[i] for i in first) > 20
    assert Counter(first.values()) == Counter(other.values())  # same shares, other items


def test_split_is_stratified_by_label():
    counts = {"common": 400, "middle": 150, "uncommon": 47, "rare": 3}
    items = labelled(counts)

    split = assign(items)

    per_label = defaultdict(Counter)
    for item_id, _data, label in items:
        per_label[label][split[item_id]] += 1
    for label, n in counts.items():
        if n >= 40:  # every split within one item of its target share of the label
            for name, ratio in RATIOS.items():
                assert abs(per_label[label][name] - ratio * n) <= 1, (label, per_label[label])
    assert set(per_label["rare"]) == set(SPLITS)  # 3 items, 3 splits
    assert sum(per_label["rare"].values()) == 3


def test_a_zero_ratio_split_gets_nothing():
    split = assign(labelled({"a": 50, "b": 5}), ratios={"train": 0.7, "validation": 0.3, "test": 0})

    assert "test" not in set(split.values())
    assert Counter(split.values()) == {"train": 38, "validation": 17}


def test_groups_stay_together_and_are_stratified_by_their_majority_label():
    rng = random.Random(1)
    items, group_label, next_id = [], {}, 1
    for g in range(80):
        label = "x" if g % 4 else "y"
        group_label[f"doc-{g}"] = label
        size = rng.randint(1, 6)
        for k in range(size):
            odd = k == size - 1 and size >= 3  # one dissenting item in bigger groups
            data = {"text": f"{g}-{k}", "doc": f"doc-{g}"}
            items.append((next_id, data, ("y" if label == "x" else "x") if odd else label))
            next_id += 1
    loose = [(next_id + i, {"text": "no group"}, "x") for i in range(10)]
    items += loose

    split = assign(items, group_key="doc")

    by_group = defaultdict(set)
    for item_id, data, _label in items:
        by_group[data.get("doc", item_id)].add(split[item_id])
    assert all(len(splits) == 1 for splits in by_group.values())
    for label in ("x", "y"):  # groups of each majority label spread by the ratios
        sizes = Counter()
        for item_id, data, _l in items:
            if group_label.get(data.get("doc")) == label:
                sizes[split[item_id]] += 1
        total = sum(sizes.values())
        for name, ratio in RATIOS.items():
            assert abs(sizes[name] - ratio * total) <= 6, (label, sizes)  # largest group: 6
    assert len({split[item_id] for item_id, _d, _l in loose}) > 1  # no key: items on their own


def test_items_keep_their_split_in_later_versions():
    v1_items = labelled({"a": 150, "b": 50})
    v1 = assign(v1_items)
    relabelled = [(i, d, "b" if i % 7 == 0 else label) for i, d, label in v1_items]
    added = labelled({"a": 120, "b": 60, "c": 20}, start=1000)

    v2 = assign(relabelled + added, previous=v1)

    assert all(v2[item_id] == v1[item_id] for item_id in v1)
    assert Counter(v2[i] for i, _d, _l in added if _l == "c") == {
        "train": 16,
        "validation": 2,
        "test": 2,
    }
    totals = Counter(v2.values())
    for name, ratio in RATIOS.items():
        assert abs(totals[name] - ratio * 400) <= 4


def test_a_new_item_joins_its_groups_earlier_split():
    v1 = assign(
        [(1, {"doc": "d1"}, "a"), (2, {"doc": "d2"}, "a"), (3, {"doc": "d3"}, "a")], group_key="doc"
    )
    items = [(1, {"doc": "d1"}, "a"), (2, {"doc": "d2"}, "a"), (3, {"doc": "d3"}, "a")]
    items += [(10 + i, {"doc": f"d{1 + i % 3}"}, "a") for i in range(9)]

    v2 = assign(items, group_key="doc", previous=v1)

    for item_id, data, _label in items:
        assert v2[item_id] == v1[int(data["doc"][1:])]


def test_split_assignment_of_50k_items_benchmark():
    """Not a timed test: prints the speed of collecting and assigning; asserts correctness."""
    n = 50_000
    rng = np.random.default_rng(7)
    labels = rng.choice(["a", "b", "c", "d", "e"], size=n, p=[0.5, 0.3, 0.15, 0.049, 0.001])
    collector = SplitCollector(config=split_clean({"group_key": "doc"}), labels=["a", "b"])

    started = time.perf_counter()
    for i, label in enumerate(labels.tolist(), start=1):
        collector.add(item_id=i, data={"doc": i // 3}, stratum=label)  # groups of three
    collected = time.perf_counter()
    result = collector.assign(None)
    assigned = time.perf_counter()
    print(  # noqa: T201 - the figures are the point of the benchmark
        f"\nsplits of {n} items: collect {collected - started:.3f} s, "
        f"split_assign {assigned - collected:.3f} s"
    )

    assert result.shape == (n,)
    groups = np.arange(1, n + 1) // 3
    first_of_group = np.unique(groups, return_index=True)[1]
    per_group = result[first_of_group][np.unique(groups, return_inverse=True)[1]]
    assert (per_group == result).all()
    shares = np.bincount(result, minlength=3) / n
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.005)


# --- in the release files -------------------------------------------------------------------------


def _project(owner, n, *, start=0, project=None, docs=5):
    project = project or ProjectFactory(created_by=owner)
    workers = [UserFactory() for _ in range(3)]
    items = Item.objects.bulk_create(
        [
            Item(
                project=project,
                data={"text": f"t{i}", "doc": f"doc-{i % docs}"},
                content_hash=f"{project.pk}-{i}",
                target=3,
            )
            for i in range(start, start + n)
        ]
    )
    Annotation.objects.bulk_create(
        [
            Annotation(
                project=project,
                item=item,
                author=worker,
                value={"label": "negative" if i % 4 == 0 else "positive"},
            )
            for i, item in enumerate(items)
            for worker in workers
        ]
    )
    return project


def _rows(release):
    record = release.files.get(format="jsonl")
    return [json.loads(line) for line in default_storage.open(record.path).read().splitlines()]


@pytest.mark.django_db
@pytest.mark.usefixtures("media_root")
def test_release_files_carry_the_split_and_the_manifest_its_counts(owner):
    project = _project(owner, 40, docs=40)
    release = release_build(release=make_release(project, owner, split=True))

    rows = _rows(release)
    assert {r["split"] for r in rows} == set(SPLITS)
    record = release.files.get(format="csv")
    table = list(csv.reader(io.StringIO(default_storage.open(record.path).read().decode())))
    assert table[0][-1] == "split"
    assert [row[-1] for row in table[1:]] == [r["split"] for r in rows]
    section = release.manifest["split"]
    assert section["seed"] == 42
    assert section["ratios"] == RATIOS
    assert section["based_on"] is None
    assert section["counts"] == dict(Counter(r["split"] for r in rows))
    assert section["counts"] == {"train": 32, "validation": 4, "test": 4}
    assert section["labels"]["negative"] == {"train": 8, "validation": 1, "test": 1}
    assert section["groups"] == 40


@pytest.mark.django_db
@pytest.mark.usefixtures("media_root")
def test_later_versions_keep_earlier_splits_and_groups(owner):
    project = _project(owner, 60)
    config = {
        "seed": 5,
        "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2},
        "group_key": "doc",
    }
    v1 = release_build(release=make_release(project, owner, split=config))
    _project(owner, 40, start=60, project=project, docs=8)  # more items: docs 5..7 are new

    v2 = release_build(release=make_release(project, owner, split=config))
    other = release_build(release=make_release(project, owner, split={**config, "seed": 6}))

    first = {r["item_id"]: r["split"] for r in _rows(v1)}
    second = {r["item_id"]: r["split"] for r in _rows(v2)}
    assert len(first) == 60
    assert len(second) == 100
    assert all(second[item_id] == split for item_id, split in first.items())
    by_doc = defaultdict(set)
    for row in _rows(v2):
        by_doc[row["data"]["doc"]].add(row["split"])
    assert all(len(splits) == 1 for splits in by_doc.values())
    assert v2.manifest["split"]["based_on"] == "v1"
    assert other.manifest["split"]["based_on"] is None  # another seed: a split of its own


@pytest.mark.django_db
@pytest.mark.usefixtures("media_root")
def test_structured_releases_split_and_export_rows_carry_it(owner, tmp_path):
    labels = [
        {"value": "PERSON", "hotkey": "p", "colour": "#0072b2"},
        {"value": "PLACE", "hotkey": "l", "colour": "#d55e00"},
    ]
    project = ProjectFactory(created_by=owner, task_type="spans", labels=labels)
    workers = [UserFactory() for _ in range(2)]
    for i in range(12):
        item = ItemFactory(project=project, data={"text": "Ada in London"}, content_hash=f"s{i}")
        span = (
            {"start": 0, "end": 3, "label": "PERSON"}
            if i % 3
            else {"start": 7, "end": 13, "label": "PLACE"}
        )
        for worker in workers:
            AnnotationFactory(item=item, author=worker, value={"spans": [span], "relations": []})

    release = release_build(release=make_release(project, owner, split={"seed": 1}))

    assert release.status == "ready", release.error
    rows = _rows(release)
    assert release.manifest["split"]["labels"]["PLACE"] == {"train": 2, "validation": 1, "test": 1}
    source = tmp_path / "data.jsonl"
    source.write_bytes(default_storage.open(release.files.get(format="jsonl").path).read())
    exported = list(export_rows(source, config=task_config_of(project)))
    assert [row.split for row in exported] == [r["split"] for r in rows]
    assert all(row.split in SPLITS for row in exported)


@pytest.mark.django_db
@pytest.mark.usefixtures("media_root")
def test_split_build_memory_does_not_grow_with_items(owner, monkeypatch):
    """Rows wait in a staging file, not in memory, while the split is computed."""
    import tracemalloc

    from quality.releases import building

    monkeypatch.setattr(building, "CHUNK_SIZE", 50)
    monkeypatch.setattr(formats, "ROW_GROUP_SIZE", 50)  # Parquet holds one row group at a time
    peaks = {}
    for n in (200, 2000):
        project = _project(owner, n, docs=n)
        Item.objects.filter(project=project).update(data={"text": "x" * 2000})
        release = make_release(project, owner, split=True)
        tracemalloc.start()
        try:
            built = release_build(release=release)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert sum(built.manifest["split"]["counts"].values()) == n

    # 2000 rows of 2 kB held at once would add 4 MB; the split's arrays add a few dozen kB.
    assert peaks[2000] < peaks[200] + 1_000_000, peaks
