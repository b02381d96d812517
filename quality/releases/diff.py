"""The difference between two versions of a project: items added, removed, and relabelled.

Both releases' data.jsonl are streamed from storage (the first read verifies each file against
its manifest checksum). The builders write rows in item id order, so the diff is a merge of two
sorted streams: memory holds only the changes, as two compact numpy arrays (item id, kind),
9 bytes per changed item. A page of changes or the CSV file reads both files again and picks up
the labels of the rows it shows.

What counts as a change: for categorical types the row's `label`; for structured types the
JSON `value` (compared with sorted keys), shown by the row's `label`, the type's summary. Items
in both releases with the same answer are unchanged, whatever their confidence or split.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files.storage import default_storage

from annotation.task_types import task_type_get
from core.exceptions import ApplicationError, ConflictError
from quality.models import Release
from quality.releases.selectors import project_get_for_releases
from quality.releases.services import release_file_open
from quality.releases.writing import DATA_FILES, csv_safe

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
KINDS = (ADDED, REMOVED, CHANGED)
_CODE = {ADDED: 1, REMOVED: 2, CHANGED: 3}
_KIND = {code: kind for kind, code in _CODE.items()}
PAGE_SIZE = 50
CSV_HEADER = ["item_id", "change", "from", "to"]

# (item id, compared key, shown label, value) of one release row
_Row = tuple[int, str, str, Any]


@dataclass(frozen=True)
class Change:
    """One item that differs between the two releases."""

    item_id: int
    change: str  # added | removed | changed
    from_label: str  # "" when added
    to_label: str  # "" when removed
    from_value: Any = None  # structured types: the stored answers
    to_value: Any = None


@dataclass
class Diff:
    """Counts of a diff between `old` and `new`, and its changes in item id order."""

    old: Release
    new: Release
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    structured: bool = False
    _ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    _codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8), repr=False)

    def count(self, kind: str = "") -> int:
        """How many changes of `kind` ("" for all)."""
        return int(len(self._ids) if not kind else np.count_nonzero(self._codes == _CODE[kind]))

    def page(self, *, number: int = 1, size: int = PAGE_SIZE, kind: str = "") -> list[Change]:
        """The changes on page `number` (1-based) of `size`, optionally only of `kind`."""
        ids = self._ids if not kind else self._ids[self._codes == _CODE[kind]]
        start = (max(number, 1) - 1) * size
        wanted = ids[start : start + size]
        if not len(wanted):
            return []
        keep = {int(item_id) for item_id in wanted}
        return list(self._changes(keep=keep, last=int(wanted[-1])))

    def changes(self, *, kind: str = "") -> Iterator[Change]:
        """Every change in item id order, streamed from both files."""
        for change in self._changes(keep=None, last=None):
            if not kind or change.change == kind:
                yield change

    def _changes(self, *, keep: set[int] | None, last: int | None) -> Iterator[Change]:
        with _DataFile(self.old) as old_file, _DataFile(self.new) as new_file:
            pairs = _merge(_rows(old_file, self.old), _rows(new_file, self.new))
            for item_id, old, new in pairs:
                if last is not None and item_id > last:
                    return
                if keep is not None and item_id not in keep:
                    continue
                change = _change(item_id, old, new)
                if change is not None:
                    yield change


def release_pair_get(
    *,
    user: AbstractBaseUser | AnonymousUser,
    project_id: int,
    from_version: Any,
    to_version: Any,
) -> tuple[Release, Release]:
    """The two ready releases of a project named by version numbers (owners and reviewers).

    Raises ApplicationError with the field ("from" or "to") when a version is missing, not a
    number or not a release of the project; ConflictError when one is not built yet.
    """
    project = project_get_for_releases(user=user, project_id=project_id)
    versions: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    for name, raw in (("from", from_version), ("to", to_version)):
        try:
            versions[name] = int(str(raw).strip().lstrip("vV"))
        except (TypeError, ValueError):
            errors[name] = [f"Give a version number, e.g. {name}=1 (got {raw!r})."]
    if errors:
        raise ApplicationError(_first(errors), fields=errors, code="invalid_version")
    found = {
        release.version: release
        for release in Release.objects.filter(
            project=project, version__in=set(versions.values())
        ).prefetch_related("files")
    }
    for name, version in versions.items():
        if version not in found:
            errors[name] = [f"Project {project.pk} has no release v{version}."]
    if errors:
        raise ApplicationError(_first(errors), fields=errors, code="unknown_version")
    old, new = found[versions["from"]], found[versions["to"]]
    for release in (old, new):
        if release.status != Release.Status.READY:
            raise ConflictError(f"Release {release.tag} is not ready yet.", code="not_ready")
        release.project = project
    return old, new


def release_diff(*, old: Release, new: Release) -> Diff:
    """Compare two ready releases of one project item by item (see the module docstring)."""
    if old.project_id != new.project_id:
        raise ApplicationError("Only releases of the same project can be compared.")
    task_type = task_type_get(new.config_snapshot.get("task_type") or "single_label")
    diff = Diff(old=old, new=new, structured=not task_type.category_key)
    ids: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    chunk_ids, chunk_codes = _Chunk(), _Chunk()
    with _DataFile(old, verify=True) as old_file, _DataFile(new, verify=True) as new_file:
        old_rows, new_rows = _rows(old_file, old), _rows(new_file, new)
        for item_id, before, after in _merge(old_rows, new_rows):
            if before is None:
                kind = ADDED
            elif after is None:
                kind = REMOVED
            elif before[1] != after[1]:
                kind = CHANGED
            else:
                diff.unchanged += 1
                continue
            setattr(diff, kind, getattr(diff, kind) + 1)
            chunk_ids.append(item_id)
            chunk_codes.append(_CODE[kind])
            if chunk_ids.full():
                ids.append(chunk_ids.take(np.int64))
                codes.append(chunk_codes.take(np.int8))
    ids.append(chunk_ids.take(np.int64))
    codes.append(chunk_codes.take(np.int8))
    diff._ids = np.concatenate(ids)
    diff._codes = np.concatenate(codes)
    return diff


def diff_csv_lines(diff: Diff, *, kind: str = "") -> Iterator[str]:
    """The diff as CSV text, a line at a time: item_id, change, from, to."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(cells: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_safe(cell) for cell in cells])
        return buffer.getvalue()

    yield line(CSV_HEADER)
    for change in diff.changes(kind=kind):
        yield line([change.item_id, change.change, change.from_label, change.to_label])


def diff_kind_clean(kind: Any) -> str:
    """The change kind filter: "" (all) or one of KINDS; ApplicationError on anything else."""
    kind = (kind or "").strip()
    if kind and kind not in KINDS:
        message = f"Unknown change kind {kind!r}; use one of: {', '.join(KINDS)}."
        raise ApplicationError(message, fields={"kind": [message]}, code="invalid_kind")
    return kind


# --- streaming ------------------------------------------------------------------------------


class _Chunk:
    """A growing list flushed into a numpy array every 65,536 entries."""

    SIZE = 1 << 16

    def __init__(self) -> None:
        self.values: list[int] = []

    def append(self, value: int) -> None:
        self.values.append(value)

    def full(self) -> bool:
        return len(self.values) >= self.SIZE

    def take(self, dtype: Any) -> np.ndarray:
        array = np.array(self.values, dtype=dtype)
        self.values = []
        return array


class _DataFile:
    """The release's data.jsonl opened from storage (checked against its checksum if asked)."""

    def __init__(self, release: Release, *, verify: bool = False) -> None:
        self.release, self.verify = release, verify
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if self.verify:
            self.handle = release_file_open(release=self.release, fmt="jsonl").file
        else:
            record = next(f for f in self.release.files.all() if f.format == "jsonl")
            self.handle = default_storage.open(record.path, "rb")
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _rows(handle: IO[bytes], release: Release) -> Iterator[_Row]:
    previous = -1
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        item_id = int(record["item_id"])
        if item_id <= previous:
            raise ApplicationError(
                f"{DATA_FILES['jsonl']} of release {release.tag} is not in item id order "
                f"(line {number}: item {item_id} after {previous})."
            )
        previous = item_id
        label = record.get("label") or ""
        if "value" in record:
            value = record["value"]
            key = json.dumps(value, sort_keys=True, separators=(",", ":"))
            yield item_id, key, label, value
        else:
            yield item_id, json.dumps(label), label, None


def _merge(
    old: Iterator[_Row], new: Iterator[_Row]
) -> Iterator[tuple[int, _Row | None, _Row | None]]:
    """(item id, old row or None, new row or None) over the union of both, in id order."""
    a, b = next(old, None), next(new, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            yield a[0], a, None  # type: ignore[index]
            a = next(old, None)
        elif a is None or b[0] < a[0]:
            yield b[0], None, b
            b = next(new, None)
        else:
            yield a[0], a, b
            a, b = next(old, None), next(new, None)


def _change(item_id: int, old: _Row | None, new: _Row | None) -> Change | None:
    if old is None and new is not None:
        return Change(item_id, ADDED, "", new[2], None, new[3])
    if new is None and old is not None:
        return Change(item_id, REMOVED, old[2], "", old[3], None)
    if old is not None and new is not None and old[1] != new[1]:
        return Change(item_id, CHANGED, old[2], new[2], old[3], new[3])
    return None


def _first(errors: dict[str, list[str]]) -> str:
    return next(iter(errors.values()))[0]
