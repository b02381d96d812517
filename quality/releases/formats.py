"""A release's data in the forms ML tools load: Parquet, a Hugging Face `datasets` directory
(zipped) and a Label Studio JSON export.

Everything is written from the release's data.jsonl, read one line at a time: memory stays
flat whatever the number of items. The same data.jsonl always gives the same bytes: a fixed
Parquet schema and row-group size (no timestamps in Parquet metadata), and zip members in a
fixed order with a fixed date.

Parquet columns: item_id, text (data["text"] or ""), label, value (JSON text, null for
categorical types), confidence, expert_reviewed, agreement (null for structured types),
num_annotations, is_gold, data (JSON text), then split and annotations (JSON text) when the
release has them.

Label Studio: a JSON list of tasks {"id", "data", "annotations", "predictions"} with results in
Label Studio's format per type (see `ls_result`); `quality.labelstudio` reads them back.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotation.task_types import TaskConfig, TaskType
from quality.models import Release

__all__ = [
    "CONTENT_TYPES",
    "FILENAMES",
    "LS_MODEL_VERSION",
    "RELEASE_FORMATS",
    "formats_write",
    "ls_result",
    "ls_to_name",
]

RELEASE_FORMATS = ("parquet", "hf", "labelstudio")
FILENAMES = {"parquet": "data.parquet", "hf": "hf.zip", "labelstudio": "labelstudio.json"}
CONTENT_TYPES = {
    "parquet": "application/vnd.apache.parquet",
    "hf": "application/zip",
    "labelstudio": "application/json",
}
ROW_GROUP_SIZE = 2_000  # rows per Parquet row group (and per batch held in memory)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip member can carry
SPLIT_ORDER = ("train", "validation", "test")
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # what `datasets` accepts as a split name
LS_MODEL_VERSION = "assay-consensus"

_BASE_FIELDS = [
    pa.field("item_id", pa.int64(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("value", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("expert_reviewed", pa.bool_()),
    pa.field("agreement", pa.float64()),
    pa.field("num_annotations", pa.int64()),
    pa.field("is_gold", pa.bool_()),
    pa.field("data", pa.string(), nullable=False),
]


def formats_write(
    *, release: Release, config: TaskConfig, task_type: TaskType, source: Path, workdir: Path
) -> list[dict[str, Any]]:
    """Write data.parquet, hf.zip and labelstudio.json from `source` (data.jsonl) into
    `workdir`; return their manifest entries (format, path, content_type, sha256, size)."""
    has_split, has_raw = _columns_of(source, default_raw=release.include_raw)
    schema = _schema(has_split=has_split, has_raw=has_raw)
    _parquet_write(source, workdir / FILENAMES["parquet"], schema)
    _hf_write(release, config, source, workdir / FILENAMES["hf"], schema, has_split=has_split)
    _labelstudio_write(source, workdir / FILENAMES["labelstudio"], config, task_type)
    return [_entry(key, workdir / FILENAMES[key]) for key in RELEASE_FORMATS]


# --- reading data.jsonl ----------------------------------------------------------------------


def _records(source: Path) -> Iterator[dict[str, Any]]:
    with source.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _columns_of(source: Path, *, default_raw: bool) -> tuple[bool, bool]:
    """(has split, has annotations), from the first record (every record has the same keys)."""
    first = next(_records(source), None)
    if first is None:
        return False, default_raw
    return "split" in first, "annotations" in first


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _entry(key: str, path: Path) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as written:
        for chunk in iter(lambda: written.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {
        "format": key,
        "path": path.name,
        "content_type": CONTENT_TYPES[key],
        "sha256": digest.hexdigest(),
        "size": size,
    }


# --- Parquet ---------------------------------------------------------------------------------


def _schema(*, has_split: bool, has_raw: bool) -> pa.Schema:
    fields = list(_BASE_FIELDS)
    if has_split:
        fields.append(pa.field("split", pa.string()))
    if has_raw:
        fields.append(pa.field("annotations", pa.string()))
    return pa.schema(fields)


def _row(record: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    data = record.get("data") or {}
    text = data.get("text") if isinstance(data, dict) else None
    value = record.get("value")
    row = {
        "item_id": record["item_id"],
        "text": text if isinstance(text, str) else "",
        "label": record.get("label"),
        "value": None if value is None else _dumps(value),
        "confidence": record.get("confidence"),
        "expert_reviewed": record.get("expert_reviewed"),
        "agreement": record.get("agreement"),
        "num_annotations": record.get("num_annotations"),
        "is_gold": record.get("is_gold"),
        "data": _dumps(data),
    }
    if "split" in schema.names:
        row["split"] = record.get("split") or "train"
    if "annotations" in schema.names:
        annotations = record.get("annotations")
        row["annotations"] = None if annotations is None else _dumps(annotations)
    return row


class _ParquetSink:
    """A Parquet file written in fixed-size row groups from rows given one at a time."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows = 0
        self._batch: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(
            str(path),
            schema,
            compression="zstd",
            # No pandas metadata, no timestamps: the bytes depend on the rows only.
            store_schema=True,
        )

    def add(self, row: dict[str, Any]) -> None:
        self._batch.append(row)
        if len(self._batch) == ROW_GROUP_SIZE:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            table = pa.Table.from_pylist(self._batch, schema=self.schema)
            self._writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
            self.rows += len(self._batch)
            self._batch = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def _parquet_write(source: Path, target: Path, schema: pa.Schema) -> None:
    sink = _ParquetSink(target, schema)
    for record in _records(source):
        sink.add(_row(record, schema))
    sink.close()


# --- Hugging Face datasets directory -----------------------------------------------------------


def _split_key(name: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def _split_file(name: str) -> str:
    return f"data/{name}-00000-of-00001.parquet"


def _hf_write(
    release: Release,
    config: TaskConfig,
    source: Path,
    target: Path,
    schema: pa.Schema,
    *,
    has_split: bool,
) -> None:
    """hf.zip: README.md (dataset card declaring the splits) and one Parquet file per split."""
    staging = target.with_suffix(".d")
    (staging / "data").mkdir(parents=True, exist_ok=True)
    sinks: dict[str, _ParquetSink] = {}
    try:
        for record in _records(source):
            split = (record.get("split") or "train") if has_split else "train"
            if not isinstance(split, str) or not SPLIT_NAME.match(split):
                raise ValueError(f"Item {record.get('item_id')}: split {split!r} is not a name.")
            if split not in sinks:
                sinks[split] = _ParquetSink(staging / _split_file(split), schema)
            sinks[split].add(_row(record, schema))
        if not sinks:  # an empty release still loads: an empty train split
            sinks["train"] = _ParquetSink(staging / _split_file("train"), schema)
    finally:
        for sink in sinks.values():
            sink.close()
    splits = sorted(sinks, key=_split_key)
    counts = {name: sinks[name].rows for name in splits}
    card = _dataset_card(release, config, counts, columns=schema.names)
    (staging / "README.md").write_text(card, encoding="utf-8")
    members = ["README.md", *(_split_file(name) for name in splits)]
    with zipfile.ZipFile(target, "w") as archive:
        for name in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with (staging / name).open("rb") as handle, archive.open(info, "w") as out:
                for chunk in iter(lambda handle=handle: handle.read(1 << 20), b""):
                    out.write(chunk)
            (staging / name).unlink()
    (staging / "data").rmdir()
    staging.rmdir()


def _yaml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _dataset_card(
    release: Release, config: TaskConfig, counts: dict[str, int], *, columns: list[str]
) -> str:
    snapshot = release.config_snapshot or {}
    title = snapshot.get("name") or f"Project {release.project_id}"
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for name in counts:
        lines += [f"  - split: {name}", f"    path: {_yaml_string(f'data/{name}-*.parquet')}"]
    lines += [
        "---",
        "",
        f"# {title} — release v{release.version}",
        "",
        f"Assay release v{release.version} of project {release.project_id}"
        + (f" ({release.name})" if release.name else "")
        + f", task type `{config.task_type}`.",
        "",
        'Load it with `datasets.load_dataset("<this directory>")`.',
        "",
        "| split | items |",
        "|---|---|",
        *(f"| {name} | {count} |" for name, count in counts.items()),
        "",
        f"Columns: {', '.join(columns)} (value, data and annotations are JSON text). "
        "The release's datasheet and manifest describe how the labels were collected.",
        "",
    ]
    return "\n".join(lines)


# --- Label Studio --------------------------------------------------------------------------------


def ls_to_name(task_type: TaskType, config: TaskConfig, data: Mapping[str, Any]) -> str:
    """The object tag name results point to: the text field, "image", or "a"/"image_a"."""
    if task_type.key == "pairwise":
        return "image_a" if "image_a" in data else "a"
    if "image" in task_type.media and "image" in data:
        return "image"
    field = config.options.get("field") if task_type.key == "spans" else None
    return field if isinstance(field, str) and field else "text"


def _result(to_name: str, kind: str, value: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"from_name": "label", "to_name": to_name, "type": kind, "value": value, **extra}


def ls_result(
    value: Mapping[str, Any] | None,
    *,
    task_type: TaskType,
    config: TaskConfig,
    data: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """An answer in its stored form as a Label Studio result list (empty for no answer, and
    for a pairwise tie, which Label Studio cannot express)."""
    if value is None:
        return []
    to_name = ls_to_name(task_type, config, data)
    key = task_type.key
    if key == "single_label":
        return [_result(to_name, "choices", {"choices": [value["label"]]})]
    if key == "multi_label":
        return [_result(to_name, "choices", {"choices": list(value["labels"])})]
    if key == "rating":
        return [_result(to_name, "rating", {"rating": value["rating"]})]
    if key == "free_text":
        return [_result(to_name, "textarea", {"text": [value["text"]]})]
    if key == "pairwise":
        choice = value["choice"]
        if choice in ("duplicate", "not_duplicate"):
            return [_result(to_name, "choices", {"choices": [choice]})]
        side = {"A": "left", "B": "right"}.get(choice)
        if side is None:  # a tie
            return []
        result = _result(to_name, "pairwise", {"selected": side})
        result["from_name"] = "pairwise"
        return [result]
    if key == "spans":
        text = data.get(to_name, "")
        results = [
            _result(
                to_name,
                "labels",
                {
                    "start": span["start"],
                    "end": span["end"],
                    "text": text[span["start"] : span["end"]] if isinstance(text, str) else "",
                    "labels": [span["label"]],
                },
                id=f"s{index}",
            )
            for index, span in enumerate(value["spans"])
        ]
        results += [
            {
                "type": "relation",
                "from_id": f"s{relation['from']}",
                "to_id": f"s{relation['to']}",
                "direction": "right",
                "labels": [relation["label"]],
            }
            for relation in value.get("relations", [])
        ]
        return results
    if key == "boxes":
        width, height = data["width"], data["height"]
        return [
            _result(
                to_name,
                "rectanglelabels",
                {
                    "x": box["x"] * 100 / width,
                    "y": box["y"] * 100 / height,
                    "width": box["w"] * 100 / width,
                    "height": box["h"] * 100 / height,
                    "rotation": 0,
                    "rectanglelabels": [box["label"]],
                },
                id=f"b{index}",
                original_width=width,
                original_height=height,
                image_rotation=0,
            )
            for index, box in enumerate(value["boxes"])
        ]
    raise ValueError(f"No Label Studio form for task type {key!r}.")


def _stored(record: Mapping[str, Any], task_type: TaskType) -> Mapping[str, Any] | None:
    """An answer's (or the consensus's) stored form from a data.jsonl entry."""
    value = record.get("value")
    if value is None and record.get("label") and task_type.category_key:
        value = task_type.value_of_category(record["label"])
    return value


def _ls_task(record: Mapping[str, Any], config: TaskConfig, task_type: TaskType) -> dict:
    data = record.get("data") or {}
    task: dict[str, Any] = {"id": record["item_id"], "data": data}
    if "annotations" in record:
        task["annotations"] = [
            {
                "id": index + 1,
                "completed_by": answer.get("annotator", ""),
                "result": ls_result(
                    _stored(answer, task_type), task_type=task_type, config=config, data=data
                ),
                "was_cancelled": False,
                "ground_truth": False,
            }
            for index, answer in enumerate(record["annotations"])
        ]
    consensus = _stored(record, task_type)
    task["predictions"] = (
        []
        if consensus is None
        else [
            {
                "model_version": LS_MODEL_VERSION,
                "score": record.get("confidence"),
                "result": ls_result(consensus, task_type=task_type, config=config, data=data),
            }
        ]
    )
    return task


def _labelstudio_write(source: Path, target: Path, config: TaskConfig, task_type: TaskType) -> None:
    with target.open("w", encoding="utf-8", newline="\n") as out:
        _ls_stream(source, out, config, task_type)


def _ls_stream(source: Path, out: IO[str], config: TaskConfig, task_type: TaskType) -> None:
    out.write("[")
    for count, record in enumerate(_records(source)):
        out.write(",\n" if count else "\n")
        out.write(_dumps(_ls_task(record, config, task_type)))
    out.write("\n]\n")
