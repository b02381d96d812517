"""Release formats: Parquet read back with pyarrow, the Hugging Face directory loaded offline with
the real `datasets`, and Label Studio JSON in its documented result shapes; all byte-identical
when written again from the same data.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import zipfile

import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage

from annotation.task_types import TaskConfig, task_type_get
from quality.models import Release
from quality.releases import formats, release_build
from quality.releases.formats import RELEASE_FORMATS, formats_write, ls_result
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.quality.factories import make_release

LABELS = [
    {"value": "positive", "hotkey": "p", "colour": "#0072b2"},
    {"value": "negative", "hotkey": "n", "colour": "#d55e00"},
]
CONFIG = TaskConfig(task_type="single_label", labels=tuple(LABELS))


def _record(item_id: int, label: str, split: str | None = None, **extra) -> dict:
    record = {
        "item_id": item_id,
        "data": {"text": f"review number {item_id}", "source": "web"},
        "label": label,
        "confidence": 0.75,
        "expert_reviewed": item_id == 2,
        "agreement": 0.6667,
        "num_annotations": 3,
        "is_gold": item_id == 1,
        "annotations": [
            {"annotator": "w0123456789", "label": label},
            {"annotator": "wabcdefabcd", "label": "negative"},
        ],
        **extra,
    }
    if split is not None:
        record["split"] = split
    return record


SPLITS = ["train", "train", "validation", "test", "train", "test", "train"]


@pytest.fixture
def source(tmp_path):
    """A data.jsonl of seven items in three splits, with raw annotations."""
    path = tmp_path / "data.jsonl"
    records = [
        _record(i + 1, "positive" if i % 3 else "negative", split) for i, split in enumerate(SPLITS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path, records


def _release(include_raw: bool = True) -> Release:
    return Release(
        project_id=41,
        version=3,
        name="Spring",
        include_raw=include_raw,
        config_snapshot={"name": "Reviews", "task_type": "single_label", "labels": LABELS},
    )


def _write(source, workdir):
    workdir.mkdir()
    task_type = task_type_get("single_label")
    return formats_write(
        release=_release(), config=CONFIG, task_type=task_type, source=source, workdir=workdir
    )


def test_entries_name_each_file_with_its_hash_and_size(source, tmp_path):
    entries = _write(source[0], tmp_path / "out")

    assert [e["format"] for e in entries] == list(RELEASE_FORMATS)
    for entry in entries:
        body = (tmp_path / "out" / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["size"] == len(body)
        assert entry["content_type"] == formats.CONTENT_TYPES[entry["format"]]


def test_parquet_reads_back_as_the_jsonl_rows_in_fixed_row_groups(source, tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "ROW_GROUP_SIZE", 3)
    path, records = source

    _write(path, tmp_path / "out")

    parquet = pq.ParquetFile(tmp_path / "out" / "data.parquet")
    assert parquet.metadata.num_row_groups == 3  # 3 + 3 + 1 rows
    assert [parquet.metadata.row_group(i).num_rows for i in range(3)] == [3, 3, 1]
    rows = parquet.read().to_pylist()
    assert parquet.schema_arrow.names == [
        "item_id",
        "text",
        "label",
        "value",
        "confidence",
        "expert_reviewed",
        "agreement",
        "num_annotations",
        "is_gold",
        "data",
        "split",
        "annotations",
    ]
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert row["item_id"] == record["item_id"]
        assert row["text"] == record["data"]["text"]
        assert row["label"] == record["label"]
        assert row["value"] is None  # categorical: no structured value
        assert row["confidence"] == record["confidence"]
        assert row["expert_reviewed"] is record["expert_reviewed"]
        assert row["agreement"] == record["agreement"]
        assert row["num_annotations"] == record["num_annotations"]
        assert row["is_gold"] is record["is_gold"]
        assert json.loads(row["data"]) == record["data"]
        assert row["split"] == record["split"]
        assert json.loads(row["annotations"]) == record["annotations"]


def test_every_format_is_byte_identical_when_written_again(source, tmp_path):
    first = _write(source[0], tmp_path / "one")
    second = _write(source[0], tmp_path / "two")

    assert first == second
    for entry in first:
        one = (tmp_path / "one" / entry["path"]).read_bytes()
        assert one == (tmp_path / "two" / entry["path"]).read_bytes()


def test_the_hf_zip_has_a_card_and_one_file_per_split_in_a_fixed_order(source, tmp_path):
    _write(source[0], tmp_path / "out")

    with zipfile.ZipFile(tmp_path / "out" / "hf.zip") as archive:
        infos = archive.infolist()
        card = archive.read("README.md").decode()
    assert [info.filename for info in infos] == [
        "README.md",
        "data/train-00000-of-00001.parquet",
        "data/validation-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
    ]
    assert {info.date_time for info in infos} == {formats.ZIP_DATE}
    header = card.split("---")[1]
    assert "configs:\n- config_name: default\n  data_files:\n" in header
    assert '  - split: train\n    path: "data/train-*.parquet"' in header
    assert '  - split: test\n    path: "data/test-*.parquet"' in header


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _load(zip_path, target):
    import datasets  # imported late: it reads the offline switches when imported

    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return datasets.load_dataset(str(target), cache_dir=str(target.parent / "cache"))


def test_the_hf_directory_loads_offline_with_datasets(source, tmp_path, offline):
    path, records = source
    _write(path, tmp_path / "out")

    loaded = _load(tmp_path / "out" / "hf.zip", tmp_path / "hf")

    assert set(loaded) == {"train", "validation", "test"}
    assert {name: loaded[name].num_rows for name in loaded} == {
        "train": SPLITS.count("train"),
        "validation": 1,
        "test": 2,
    }
    train = [r for r in records if r["split"] == "train"]
    assert loaded["train"]["item_id"] == [r["item_id"] for r in train]
    assert loaded["train"]["label"] == [r["label"] for r in train]
    assert loaded["test"][0]["text"] == "review number 4"


def test_without_splits_every_row_is_in_train(tmp_path, offline):
    path = tmp_path / "data.jsonl"
    records = [_record(i, "positive") for i in (1, 2, 3)]
    for record in records:
        del record["annotations"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    workdir = tmp_path / "out"
    workdir.mkdir()
    formats_write(
        release=_release(include_raw=False),
        config=CONFIG,
        task_type=task_type_get("single_label"),
        source=path,
        workdir=workdir,
    )

    loaded = _load(workdir / "hf.zip", tmp_path / "hf")

    assert list(loaded) == ["train"]
    assert loaded["train"].num_rows == 3
    assert "split" not in loaded["train"].column_names
    assert "annotations" not in loaded["train"].column_names


def test_a_split_that_is_not_a_name_is_refused(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(_record(1, "positive", "../x")) + "\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"Item 1: split '\.\./x'"):
        _write(path, tmp_path / "out")


# --- Label Studio ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_labelstudio_export_of_a_built_release(media_root, tmp_path):
    owner = UserFactory()
    project = ProjectFactory(created_by=owner, labels=LABELS)
    item = ItemFactory(project=project, data={"text": "great phone"})
    workers = UserFactory.create_batch(3)
    for worker, label in zip(workers, ["positive", "positive", "negative"], strict=True):
        AnnotationFactory(item=item, author=worker, value={"label": label})
    release = release_build(release=make_release(project, owner, include_raw=True))
    assert release.status == "ready", release.error
    source = tmp_path / "data.jsonl"
    source.write_bytes(default_storage.open(release.files.get(format="jsonl").path).read())
    config = TaskConfig(task_type="single_label", labels=tuple(project.labels))
    workdir = tmp_path / "out"
    workdir.mkdir()

    formats_write(
        release=release,
        config=config,
        task_type=task_type_get("single_label"),
        source=source,
        workdir=workdir,
    )

    tasks = json.loads((workdir / "labelstudio.json").read_text())
    assert len(tasks) == 1
    task = tasks[0]
    assert task["id"] == item.pk
    assert task["data"] == {"text": "great phone"}
    assert [a["result"][0]["value"]["choices"] for a in task["annotations"]] == [
        ["positive"],
        ["positive"],
        ["negative"],
    ]
    assert all(a["completed_by"].startswith("w") for a in task["annotations"])
    result = task["annotations"][0]["result"][0]
    assert (result["from_name"], result["to_name"], result["type"]) == ("label", "text", "choices")
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "assay-consensus"
    assert prediction["score"] == pytest.approx(json.loads(source.read_text())["confidence"])
    assert prediction["result"][0]["value"] == {"choices": ["positive"]}


def _ls(key: str, value, data, **options):
    config = TaskConfig(task_type=key, labels=tuple(LABELS), options=options)
    return ls_result(value, task_type=task_type_get(key), config=config, data=data)


def test_ls_results_per_type_follow_label_studios_shapes():
    text = {"text": "Ada met Bob"}
    assert _ls("multi_label", {"labels": ["positive", "negative"]}, text) == [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": ["positive", "negative"]},
        }
    ]
    assert _ls("rating", {"rating": 4}, text)[0]["value"] == {"rating": 4}
    assert _ls("rating", {"rating": 4}, text)[0]["type"] == "rating"
    assert _ls("free_text", {"text": "ok"}, text)[0]["value"] == {"text": ["ok"]}
    assert _ls("free_text", {"text": "ok"}, text)[0]["type"] == "textarea"
    image = {"image": "https://img.example/1.png", "width": 200, "height": 100}
    single = _ls("single_label", {"label": "negative"}, image)[0]
    assert single["to_name"] == "image"


def test_ls_spans_are_labels_with_text_and_relations_by_result_id():
    value = {
        "spans": [
            {"start": 0, "end": 3, "label": "positive"},
            {"start": 8, "end": 11, "label": "negative"},
        ],
        "relations": [{"from": 0, "to": 1, "label": "knows"}],
    }

    results = _ls("spans", value, {"body": "Ada met Bob"}, field="body")

    first, second, relation = results
    assert first == {
        "id": "s0",
        "from_name": "label",
        "to_name": "body",
        "type": "labels",
        "value": {"start": 0, "end": 3, "text": "Ada", "labels": ["positive"]},
    }
    assert second["value"]["text"] == "Bob"
    assert relation == {
        "type": "relation",
        "from_id": "s0",
        "to_id": "s1",
        "direction": "right",
        "labels": ["knows"],
    }


def test_ls_boxes_are_rectanglelabels_in_percent_of_the_original_size():
    data = {"image": "https://img.example/1.png", "width": 400, "height": 200}
    value = {"boxes": [{"x": 100, "y": 50, "w": 200, "h": 20, "label": "positive"}]}

    (result,) = _ls("boxes", value, data)

    assert result["type"] == "rectanglelabels"
    assert (result["from_name"], result["to_name"]) == ("label", "image")
    assert (result["original_width"], result["original_height"]) == (400, 200)
    assert result["value"] == {
        "x": 25.0,
        "y": 25.0,
        "width": 50.0,
        "height": 10.0,
        "rotation": 0,
        "rectanglelabels": ["positive"],
    }


def test_ls_pairwise_selects_left_or_right_and_skips_ties():
    pair = {"a": "Lyon", "b": "Paris"}

    assert _ls("pairwise", {"choice": "A"}, pair)[0]["value"] == {"selected": "left"}
    right = _ls("pairwise", {"choice": "B"}, pair)[0]
    assert (right["type"], right["value"]) == ("pairwise", {"selected": "right"})
    assert _ls("pairwise", {"choice": "tie"}, pair) == []
    duplicate = _ls("pairwise", {"choice": "duplicate"}, pair, mode="duplicate")[0]
    assert (duplicate["type"], duplicate["value"]) == ("choices", {"choices": ["duplicate"]})
