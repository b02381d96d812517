"""Image zip imports: a .zip of images, with an optional metadata file, turned into items.

Pass 1 (`zip_validate`) reads every entry and checks it: names, sizes, each image decoded by
Pillow, the metadata rows. Nothing is stored. Pass 2 (`zip_write`, inside the caller's
transaction under the project's lock) writes the images of new items to the default storage,
content-addressed, then inserts the items; it records what it wrote so the caller deletes it
when anything fails (no orphaned files).
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from PIL import Image, UnidentifiedImageError

from annotation.imports.inserting import (
    Writer,
    _bulk_create_writer,
    _copy_writer,
    _KnownHashes,
    _NewItem,
)
from annotation.imports.parsing import (
    ROW_KEYS,
    ImportRow,
    Issue,
    _csv_data,
    _csv_records,
    _decoded_lines,
    _dumps,
    _issue,
    _jsonl_objects,
    _not_utf8,
    _NotUtf8Error,
    _open,
    csv_prediction,
)
from annotation.imports.predicting import RowRefusedError, predictions_store
from annotation.imports.rules import RowRules
from annotation.models import ImportJob, Project

ZIP = "zip"  # ImportJob.format of an image zip
MAX_ENTRIES = 10_000  # entries in the zip, directories included
MAX_TOTAL_BYTES = 1 << 30  # uncompressed bytes of all entries, declared and read
MAX_IMAGE_BYTES = 50 << 20  # one image file
MAX_METADATA_BYTES = 50 << 20
MAX_IMAGE_PIXELS = 40_000_000  # width x height of one image (decompression bombs)
# Pillow format -> (file extension in storage, content type).
FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
}
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
NOT_AN_IMAGE = "Not an image: a zip holds png, jpeg, webp or gif files (and one metadata file)."


class _EntryError(Exception):
    """An entry of the zip that cannot be imported; the message says why."""


@dataclass(frozen=True, slots=True)
class ZipImage:
    """One verified image of the zip and where it goes in storage."""

    entry: str
    path: str  # items/<project id>/<sha256>.<ext>
    sha256: str
    width: int
    height: int


@dataclass(slots=True)
class ZipPlan:
    """What pass 1 of a zip import learnt for pass 2: the items and their images."""

    rows: int = 0
    items: list[tuple[_NewItem, tuple[ZipImage, ...]]] = field(default_factory=list)

    def add(self, row: ImportRow, images: tuple[ZipImage, ...]) -> None:
        gold = None if row.gold is None else _dumps(row.gold)
        item = _NewItem(_dumps(row.data), row.digest, gold, row.line, row.predictions)
        self.items.append((item, images))
        self.rows += 1


def _entry_issue(name: str, message: str, line: int | None = None, key: str | None = None) -> Issue:
    return {**_issue(line, key, f"{name}: {message}"), "file": name}


def _unsafe(name: str) -> bool:
    """Absolute names, drive letters, backslashes and parent references."""
    if name.startswith(("/", "\\")) or "\x00" in name or "\\" in name:
        return True
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return True
    return any(part == ".." for part in name.split("/"))


def _ignored(name: str) -> bool:
    parts = name.split("/")
    return name.endswith("/") or parts[0] == "__MACOSX" or parts[-1] in IGNORED_NAMES


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes; refuses one declared or found larger than `limit` or than declared."""
    if info.file_size > limit:
        raise _EntryError(f"{info.file_size:,} bytes; the limit is {limit:,}.")
    try:
        with archive.open(info) as stream:
            data = stream.read(limit + 1)
    except RuntimeError as exc:  # encrypted
        raise _EntryError(f"Cannot be read ({exc}).") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise _EntryError(f"Damaged in the zip ({exc}).") from None
    if len(data) > limit or len(data) != info.file_size:
        raise _EntryError("Its size differs from the size the zip declares.")
    return data


def _verify(data: bytes) -> tuple[str, int, int]:
    """(Pillow format, width, height) of an image fully decoded; _EntryError otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
                kind, (width, height) = image.format or "", image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _EntryError(
                        f"{width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels."
                    )
                image.verify()
            with Image.open(io.BytesIO(data), formats=[kind]) as image:
                image.load()
        except UnidentifiedImageError:
            raise _EntryError(NOT_AN_IMAGE) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _EntryError("Too many pixels (a decompression bomb?).") from None
        except _EntryError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on damaged files
            raise _EntryError(f"A damaged {kind or 'image'} file ({exc}).") from None
    if width < 1 or height < 1:
        raise _EntryError("An image without pixels.")
    return kind, width, height


@dataclass(slots=True)
class _Scan:
    images: dict[str, ZipImage] = field(default_factory=dict)  # by entry name
    metadata: zipfile.ZipInfo | None = None
    errors: list[Issue] = field(default_factory=list)


def _scan_entries(
    archive: zipfile.ZipFile, project_id: int, progress: Callable[[int, int], None]
) -> _Scan:
    """Every entry checked and every image verified."""
    scan = _Scan()
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        scan.errors.append(_issue(None, None, f"The zip has more than {MAX_ENTRIES:,} entries."))
        return scan
    declared = sum(info.file_size for info in infos)
    if declared > MAX_TOTAL_BYTES:
        message = f"The zip unpacks to {declared:,} bytes; the limit is {MAX_TOTAL_BYTES:,}."
        scan.errors.append(_issue(None, None, message))
        return scan
    seen: set[str] = set()
    read_total = 0
    candidates = sum(
        1 for info in infos if not _ignored(info.filename) and info.filename not in METADATA_NAMES
    )
    for info in infos:
        name = info.filename
        if _unsafe(name):
            scan.errors.append(
                _entry_issue(
                    name, "An unsafe name (absolute, a drive letter, '..' or backslashes)."
                )
            )
            continue
        if name in seen:
            scan.errors.append(_entry_issue(name, "The zip holds two entries of this name."))
            continue
        seen.add(name)
        if _ignored(name):
            continue
        if name in METADATA_NAMES:
            if scan.metadata is not None:
                message = "Only one metadata file (metadata.csv or metadata.jsonl) is allowed."
                scan.errors.append(_entry_issue(name, message))
            scan.metadata = info
            continue
        try:
            data = _read(archive, info, MAX_IMAGE_BYTES)
            read_total += len(data)
            if read_total > MAX_TOTAL_BYTES:
                raise _EntryError(f"The zip unpacks to more than {MAX_TOTAL_BYTES:,} bytes.")
            kind, width, height = _verify(data)
        except _EntryError as exc:
            scan.errors.append(_entry_issue(name, str(exc)))
            continue
        sha = hashlib.sha256(data).hexdigest()
        path = f"items/{project_id}/{sha}.{FORMATS[kind][0]}"
        scan.images[name] = ZipImage(name, path, sha, width, height)
        progress(len(scan.images), candidates)
    return scan


def _image_keys(rules: RowRules) -> tuple[tuple[str, str], ...]:
    """(item data key, suffix of its name/width/height keys) per image of an item."""
    keys = rules.task_type.image_keys
    if len(keys) == 1:
        return ((keys[0], ""),)
    return tuple((key, "_" + key.rsplit("_", 1)[-1]) for key in keys)


def _with_image(data: dict[str, Any], image: ZipImage, key: str, suffix: str) -> None:
    data[key] = image.path
    data[f"name{suffix}"] = image.entry
    data[f"width{suffix}"] = image.width
    data[f"height{suffix}"] = image.height


def _metadata_records(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, rules: RowRules, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, Any], Any, bool, Any] | Issue]:
    """(line, data, gold, gold is CSV text, predictions) per metadata row, or its issue.

    Predictions are a JSONL row's list, or a CSV row's prediction cells (see `predicting`).
    """
    lines = _decoded_lines(io.BytesIO(_read(archive, info, MAX_METADATA_BYTES)))
    if info.filename.endswith(".csv"):
        for entry in _csv_records(lines, rules, required):
            if isinstance(entry, dict):
                yield entry
            else:
                line, record = entry
                data = _csv_data(record, rules.columns)
                yield line, data, record.get("gold"), True, csv_prediction(record)
        return
    for entry in _jsonl_objects(lines):
        if isinstance(entry, dict):
            yield entry
        else:
            line, obj, _raw = entry
            data = {key: value for key, value in obj.items() if key not in ROW_KEYS}
            yield line, data, obj.get("gold"), False, obj.get("predictions")


def _metadata_rows(
    archive: zipfile.ZipFile, scan: _Scan, rules: RowRules, plan: ZipPlan
) -> list[Issue]:
    """Fill `plan` from the metadata file's rows; return their issues."""
    assert scan.metadata is not None
    name = scan.metadata.filename
    keys = _image_keys(rules)
    errors: list[Issue] = []
    used: set[str] = set()
    try:
        records = list(_metadata_records(archive, scan.metadata, rules, tuple(k for k, _ in keys)))
    except _EntryError as exc:
        return [_entry_issue(name, str(exc))]
    except _NotUtf8Error as exc:
        return [{**_not_utf8(exc), "file": name}]
    for record in records:
        if isinstance(record, dict):
            errors.append({**record, "file": name})
            continue
        line, data, gold, gold_from_text, predictions = record
        images: list[ZipImage] = []
        for key, suffix in keys:
            ref = data.get(key)
            ref = ref.strip().removeprefix("./") if isinstance(ref, str) else ref
            image = scan.images.get(ref) if isinstance(ref, str) else None
            if image is None:
                message = f"No image named {ref!r} in the zip." if ref else f"Missing '{key}'."
                errors.append(_entry_issue(name, message, line, key))
                continue
            used.add(image.entry)
            images.append(image)
            _with_image(data, image, key, suffix)
        if len(images) != len(keys):
            continue
        result = rules.row(
            line,
            data,
            gold,
            gold_from_text=gold_from_text,
            predictions=None if gold_from_text else predictions,
            prediction_cells=predictions if gold_from_text else None,
        )
        if isinstance(result, list):
            errors.extend({**issue, "file": name} for issue in result)
        else:
            plan.add(result, tuple(images))
    for entry in scan.images:
        if entry not in used:
            errors.append(_entry_issue(entry, f"No row of {name} names this image."))
    return errors


def zip_validate(
    job: ImportJob, rules: RowRules, progress: Callable[[int, int], None]
) -> tuple[ZipPlan, list[Issue]]:
    """Pass 1 of a zip import: the plan of items, and every problem found (entry named).

    `progress(images verified, images in all)` is called after each image.
    """
    plan = ZipPlan()
    with _open(job) as stream:
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            return plan, [_issue(None, None, f"Not a readable zip file ({exc}).")]
        with archive:
            scan = _scan_entries(archive, job.project_id, progress)
            errors = scan.errors
            if errors and not scan.images and scan.metadata is None:
                return plan, errors
            if scan.metadata is not None:
                errors += _metadata_rows(archive, scan, rules, plan)
            elif len(rules.task_type.image_keys) > 1:
                named = " and ".join(rules.task_type.image_keys)
                message = (
                    f"A {rules.task_type.name.lower()} zip needs metadata.csv or metadata.jsonl "
                    f"naming {named} for each item."
                )
                errors.append(_issue(None, None, message))
            else:
                for image in scan.images.values():
                    data: dict[str, Any] = {}
                    _with_image(data, image, "image", "")
                    result = rules.row(0, data, None)
                    if isinstance(result, list):
                        errors.extend(
                            {**issue, "line": None, "file": image.entry} for issue in result
                        )
                    else:
                        plan.add(result, (image,))
    return plan, errors


def zip_write(
    job: ImportJob, project: Project, plan: ZipPlan, written: list[str]
) -> tuple[int, int]:
    """Pass 2: store the images of new items and insert the items; return (created, duplicates).

    Runs inside the caller's transaction holding the project's lock. Appends every storage
    path it creates to `written`, so the caller can delete them if anything fails afterwards.
    """
    writer: Writer = _copy_writer if connection.vendor == "postgresql" else _bulk_create_writer
    images_of = {item.digest: images for item, images in plan.items}
    fresh = _KnownHashes(project).keep_new([item for item, _images in plan.items])
    wanted = {image.path: image for item in fresh for image in images_of[item.digest]}
    with _open(job) as stream, zipfile.ZipFile(stream) as archive:
        for path, image in wanted.items():
            if default_storage.exists(path):  # the same picture, stored before
                continue
            data = _read(archive, archive.getinfo(image.entry), MAX_IMAGE_BYTES)
            if hashlib.sha256(data).hexdigest() != image.sha256:
                raise RuntimeError(f"{image.entry} changed after validation.")
            saved = default_storage.save(path, ContentFile(data))
            written.append(saved)
            if saved != path:
                raise RuntimeError(f"Storage saved {path} as {saved}.")
    writer(project, fresh)
    refused = predictions_store(
        project,
        [(item.line, item.digest, item.predictions) for item, _ in plan.items if item.predictions],
    )
    if refused:
        raise RowRefusedError(refused)
    return len(fresh), len(plan.items) - len(fresh)


def stored_delete(paths: list[str]) -> None:
    """Delete files a failed zip import wrote."""
    for path in paths:
        default_storage.delete(path)


def content_type_of(path: str) -> str:
    """The content type of a stored item image, from its extension."""
    extension = PurePosixPath(path).suffix.lower().lstrip(".")
    types = dict(FORMATS.values()) | {"jpeg": "image/jpeg"}
    return types.get(extension, "application/octet-stream")
