"""Writing a release's files: data.jsonl and data.csv through a `RowSink` (hashed as they are
written, with a `split` column when the release has a split), then every file beyond them
(`extra_files_write`: the task type's export forms, then `formats`), read back from data.jsonl.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annotation.task_types import ExportForm, ExportRow, TaskConfig, task_type_get
from quality.models import Release
from quality.releases.splits import (
    SPLITS,
    SplitCollector,
    previous_release,
    previous_splits,
    split_of,
)

DATA_FILES = {"jsonl": "data.jsonl", "csv": "data.csv"}
# A CSV cell starting with one of these is read as a formula by spreadsheet programs.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A CSV cell that spreadsheets will not run: text that could start a formula gets a '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _HashingWriter:
    """A text sink that writes UTF-8 to a file and hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(text)

    def close(self) -> dict[str, Any]:
        self._file.close()
        return {"sha256": self._hash.hexdigest(), "size": self.size}


class RowSink:
    """Where a builder's rows go: straight into data.jsonl and data.csv, or, when the release
    has a split, first into a staging file while the split's inputs are collected; `close`
    then assigns the splits and writes both files with a `split` column (the last CSV column).
    """

    STAGING = "rows.staging.jsonl"

    def __init__(
        self, *, release: Release, workdir: Path, header: list[str], labels: list[str]
    ) -> None:
        self.release = release
        self.workdir = workdir
        self.split = split_of(release)
        self.collector = SplitCollector(config=self.split, labels=labels) if self.split else None
        self.header = [*header, "split"] if self.split else list(header)
        if self.collector is not None:
            self._staging = (workdir / self.STAGING).open("w", encoding="utf-8")
        else:
            self._open_outputs()

    def _open_outputs(self) -> None:
        self._jsonl = _HashingWriter(self.workdir / DATA_FILES["jsonl"])
        self._csv = _HashingWriter(self.workdir / DATA_FILES["csv"])
        self._rows = csv.writer(self._csv, lineterminator="\n")
        self._rows.writerow(self.header)

    def _write(self, record: dict[str, Any], csv_row: list[Any]) -> None:
        self._jsonl.write(_dumps(record) + "\n")
        self._rows.writerow([csv_safe(cell) for cell in csv_row])

    def add(self, record: dict[str, Any], csv_row: list[Any], *, stratum: str) -> None:
        """One released item: its JSONL record, its CSV cells, and its split stratum label."""
        if self.collector is None:
            self._write(record, csv_row)
            return
        self.collector.add(item_id=record["item_id"], data=record["data"], stratum=stratum)
        self._staging.write(_dumps([record, csv_row]) + "\n")

    def close(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The manifest entries of data.csv and data.jsonl, and the manifest's split section
        (None without a split)."""
        summary = None
        if self.collector is not None:
            self._staging.close()
            based_on = previous_release(self.release, self.split)
            assigned = self.collector.assign(previous_splits(based_on) if based_on else None)
            self._open_outputs()
            staging = self.workdir / self.STAGING
            with staging.open("r", encoding="utf-8") as lines:
                for line, k in zip(lines, assigned.tolist(), strict=True):
                    record, csv_row = json.loads(line)
                    record["split"] = SPLITS[k]
                    self._write(record, [*csv_row, SPLITS[k]])
            staging.unlink()
            summary = self.collector.summary(assigned, based_on)
        files = [
            {"format": "csv", "path": DATA_FILES["csv"], **self._csv.close()},
            {"format": "jsonl", "path": DATA_FILES["jsonl"], **self._jsonl.close()},
        ]
        return files, summary


def _text(data: Any) -> str:
    text = data.get("text", "") if isinstance(data, dict) else ""
    return text if isinstance(text, str) else _dumps(text)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def extra_files_write(
    *, release: Release, config: TaskConfig, task_type: Any, workdir: Path
) -> list[dict[str, Any]]:
    """Write every file beyond data.jsonl and data.csv from the finished data.jsonl: the task
    type's export forms, then Parquet, the Hugging Face directory and Label Studio JSON
    (quality.releases.formats); their manifest entries."""
    from quality.releases.formats import formats_write  # it reads this module's constants

    source = workdir / DATA_FILES["jsonl"]
    entries = [
        export_form_write(form=form, config=config, source=source, workdir=workdir)
        for form in task_type.export_forms_for(config)
    ]
    entries += formats_write(
        release=release, config=config, task_type=task_type, source=source, workdir=workdir
    )
    return entries


def export_rows(source: Path, *, config: TaskConfig) -> Iterator[ExportRow]:
    """The released items as export forms read them, streamed back from data.jsonl."""
    task_type = task_type_get(config.task_type)
    with source.open("rb") as lines:
        for line in lines:
            record = json.loads(line)
            value = record.get("value")
            if value is None and record.get("label"):
                value = task_type.value_of_category(record["label"])
            yield ExportRow(
                item_id=record["item_id"],
                data=record["data"],
                value=value,
                split=record.get("split", ""),
            )


def export_form_write(
    *, form: ExportForm, config: TaskConfig, source: Path, workdir: Path
) -> dict[str, Any]:
    """Write one of the task type's export forms next to data.jsonl; its manifest entry."""
    target = workdir / form.filename
    with target.open("wb") as out:
        form.write(export_rows(source, config=config), out, config)
    digest, size = hashlib.sha256(), 0
    with target.open("rb") as written:
        for chunk in iter(lambda: written.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {
        "format": form.key,
        "path": form.filename,
        "content_type": form.content_type,
        "sha256": digest.hexdigest(),
        "size": size,
    }
