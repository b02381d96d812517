"""Reading an import file: streaming its lines from storage and checking each row.

Nothing here writes: the readers yield valid rows (ImportRow) and problems (Issue) in file
order, so pass 1 can count and report them and pass 2 can read the same rows again. What a row
must hold comes from the project's task type (`rules.RowRules`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from annotation.models import ImportJob

if TYPE_CHECKING:
    from annotation.imports.rules import RowRules

DIGEST_SIZE = hashlib.sha256().digest_size
BOM = b"\xef\xbb\xbf"
# JSON escapes hiding what PostgreSQL's jsonb refuses: NUL and (unpaired) surrogates.
SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
URL_PREFIXES = ("https://", "http://")
# Item data keys holding image references (a storage path or an http(s) URL).
IMAGE_KEYS = ("image", "image_a", "image_b")
# Left out of the duplicate key of items without text: an uploaded image's original file name.
NAME_KEYS = frozenset({"name", "name_a", "name_b"})
# CSV columns of a row's one prediction (pre-label); never kept in the item's data.
PREDICTION_COLUMNS = (
    "prediction",
    "prediction_score",
    "prediction_model",
    "prediction_model_version",
)

Issue = dict[str, Any]  # {"line": int | None, "field": str | None, "message": str[, "file"]}


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One valid row of an import file: what becomes an item."""

    line: int
    text: str | None  # the duplicate key when the item has a text
    data: dict[str, Any]
    gold: dict[str, Any] | None  # the gold answer in the type's stored form
    data_json: str | None = None  # `data` as JSON text, when the file already holds it
    # Pre-labels, cleaned: {"value", "score", "model_name", "model_version"} each.
    predictions: tuple[dict[str, Any], ...] = ()

    @property
    def digest(self) -> bytes:
        """The row's duplicate key (see `data_digest`)."""
        if self.text is not None:
            return _digest(self.text)
        return data_digest(self.data)


class _NotUtf8Error(Exception):
    def __init__(self, line: int, exc: UnicodeDecodeError) -> None:
        super().__init__(line)
        self.line = line
        self.exc = exc


def _digest(text: str) -> bytes:
    return hashlib.sha256(unicodedata.normalize("NFC", text).strip().encode()).digest()


def content_hash(text: str) -> str:
    """The duplicate key of an item's text: SHA-256 of the NFC-normalised, stripped text."""
    return _digest(text).hex()


def _canonical(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {_canonical(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def data_digest(data: Mapping[str, Any]) -> bytes:
    """The duplicate key of an item: its text's digest when it has a text, else the SHA-256 of
    its data's canonical form (NFC strings, sorted keys, compact JSON, no original file names).
    """
    text = data.get("text")
    if isinstance(text, str) and not _has_image(data):
        return _digest(text)
    kept = {key: value for key, value in data.items() if key not in NAME_KEYS}
    canonical = json.dumps(
        _canonical(kept), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).digest()


def _has_image(data: Mapping[str, Any]) -> bool:
    return "image" in data or "image_a" in data or "image_b" in data


def data_hash(data: Mapping[str, Any]) -> str:
    """`data_digest` as the hex string stored in Item.content_hash."""
    return data_digest(data).hex()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _issue(line: int | None, field: str | None, message: str) -> Issue:
    return {"line": line, "field": field, "message": message}


@dataclass(slots=True)
class _Plan:
    """What pass 1 learnt for pass 2: every valid row's content hash, in file order."""

    rows: int = 0
    digests: bytearray = field(default_factory=bytearray)  # DIGEST_SIZE bytes per row
    rebuild: set[int] = field(default_factory=set)  # rows whose data is not their line as is

    def add(self, row: ImportRow) -> None:
        self.digests += row.digest
        if row.data_json is None:
            self.rebuild.add(self.rows)
        self.rows += 1

    def digest(self, index: int) -> bytes:
        return bytes(self.digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE])


# --- Lines -----------------------------------------------------------------------------------


def _open(job: ImportJob) -> IO[bytes]:
    return job.file.storage.open(job.file.name, "rb")


def _count_lines(job: ImportJob) -> int:
    """Lines in the file (an upper bound on rows, for the progress bar); reads in chunks."""
    count, last = 0, b"\n"
    with _open(job) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _decoded_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """The file's lines as text, with line endings kept; a BOM on line 1 is dropped."""
    for number, raw in enumerate(stream, start=1):
        chunk = raw[len(BOM) :] if number == 1 and raw.startswith(BOM) else raw
        try:
            yield chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8Error(number, exc) from None


def _not_utf8(exc: _NotUtf8Error) -> Issue:
    bad = exc.exc.object[exc.exc.start : exc.exc.start + 1].hex().upper()
    return _issue(
        exc.line,
        None,
        f"The file is not UTF-8: byte 0x{bad} at position {exc.exc.start + 1} of this line. "
        "Save the file as UTF-8 and upload it again.",
    )


# Keys of a JSONL row that are not the item's data.
ROW_KEYS = frozenset({"gold", "predictions"})


# --- JSONL -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"the number {literal} is too large")
    return number


# One decoder for every line (json.loads would build a new one per call).
DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _unstorable(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored (NUL characters, unpaired surrogates)."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000)"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "contains an unpaired surrogate escape"
        return None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        return next((why for why in map(_unstorable, value) if why), None)
    return None


def _json_object(raw: str, line: int) -> tuple[dict[str, Any] | None, Issue | None]:
    try:
        obj = DECODER.decode(raw)
    except json.JSONDecodeError as exc:
        return None, _issue(line, None, f"Invalid JSON: {exc.msg} (column {exc.colno}).")
    except (ValueError, RecursionError) as exc:
        return None, _issue(line, None, f"Invalid JSON: {exc or 'nested too deeply'}.")
    if not isinstance(obj, dict):
        return None, _issue(line, None, "Each line must be a JSON object.")
    if SUSPECT_ESCAPE.search(raw):  # cheap test first: these escapes are rare
        for key, value in obj.items():
            why = _unstorable([key, value])
            if why:
                return None, _issue(line, key, f"The value {why}, which cannot be stored.")
    return obj, None


def _jsonl_objects(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any], str] | Issue]:
    """(line number, object, line) per non-blank line, or the line's issue."""
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        obj, problem = _json_object(raw, line)
        if problem is not None or obj is None:
            yield problem or _issue(line, None, "Unreadable line.")
            continue
        yield line, obj, raw


def _jsonl_rows(lines: Iterable[str], rules: RowRules) -> Iterator[ImportRow | Issue]:
    # The loop of _jsonl_objects, inlined: this is the hot path of big text imports.
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        obj, problem = _json_object(raw, line)
        if problem is not None or obj is None:
            yield problem or _issue(line, None, "Unreadable line.")
            continue
        if "gold" in obj or "predictions" in obj:
            data = {key: value for key, value in obj.items() if key not in ROW_KEYS}
            result = rules.row(line, data, obj.get("gold"), predictions=obj.get("predictions"))
        else:  # the line itself is the data's JSON: COPY sends it without encoding it again
            result = rules.row(line, obj, None, data_json=raw.strip())
        if isinstance(result, list):
            yield from result
        else:
            yield result


# --- CSV -------------------------------------------------------------------------------------


def _csv_header(
    header: list[str], columns: tuple[str, ...], required: tuple[str, ...]
) -> tuple[list[str], Issue | None]:
    """Column names, the type's own columns and gold matched ignoring case and spaces.

    The header needs at least one of `required` (the columns an item is made of).
    """
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if not any(column in lowered for column in required):
        found = ", ".join(name for name in names if name) or "no named columns"
        wanted = " or ".join(f"'{column}'" for column in required)
        field_name = required[0]
        return names, _issue(1, field_name, f"The header has no {wanted} column (found: {found}).")
    special = {column.lower(): column for column in (*columns, "gold", *PREDICTION_COLUMNS)}
    for low in special:
        if lowered.count(low) > 1:
            return names, _issue(1, low, f"The header has more than one '{low}' column.")
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            return names, _issue(1, name, f"The header has two columns named {name!r}.")
        seen.add(name)
    return [special.get(low, name) for name, low in zip(names, lowered, strict=True)], None


def _csv_records(
    lines: Iterable[str], rules: RowRules, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]] | Issue]:
    """(line number, {column: cell}) per non-blank record, or its issue."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _issue(1, None, f"Unreadable CSV header: {exc}.")
        return
    names, problem = _csv_header(header, rules.columns, required)
    if problem:
        yield problem
        return
    while True:
        line = reader.line_num + 1  # the record starts on the line after the previous one
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _issue(line, None, f"Unreadable CSV row: {exc}.")
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(names):
            yield _issue(line, None, f"Expected {len(names)} fields, found {len(fields)}.")
            continue
        yield line, dict(zip(names, fields, strict=True))


CSV_ROW_COLUMNS = frozenset({"gold", *PREDICTION_COLUMNS})


def csv_prediction(record: dict[str, str]) -> dict[str, str] | None:
    """A CSV record's prediction cells ({"prediction", "prediction_score", ...}), or None when
    the record has no prediction columns or they are all empty."""
    cells = {name: record[name] for name in PREDICTION_COLUMNS if name in record}
    return cells if any(cell.strip() for cell in cells.values()) else None


def _csv_data(record: dict[str, str], columns: tuple[str, ...]) -> dict[str, Any]:
    """A CSV record as item data: empty cells of the type's columns left out, whole-number
    sizes ("width", "height") as numbers, unnamed columns, gold and prediction columns dropped."""
    data: dict[str, Any] = {}
    for key, value in record.items():
        if not key or key in CSV_ROW_COLUMNS or (key in columns and value == ""):
            continue
        if key in ("width", "height") and value.strip().isdecimal():
            data[key] = int(value)
        else:
            data[key] = value
    return data


def _csv_rows(lines: Iterable[str], rules: RowRules) -> Iterator[ImportRow | Issue]:
    required = tuple(column for column in rules.columns if column not in ("width", "height"))
    for entry in _csv_records(lines, rules, required):
        if isinstance(entry, dict):
            yield entry
            continue
        line, record = entry
        data = _csv_data(record, rules.columns)
        result = rules.row(
            line,
            data,
            record.get("gold"),
            gold_from_text=True,
            prediction_cells=csv_prediction(record),
        )
        if isinstance(result, list):
            yield from result
        else:
            yield result


def _rows(stream: IO[bytes], job: ImportJob, rules: RowRules) -> Iterator[ImportRow | Issue]:
    """Parse the file, yielding valid rows and issues in file order."""
    lines = _decoded_lines(stream)
    if job.format == ImportJob.Format.CSV:
        return _csv_rows(lines, rules)
    return _jsonl_rows(lines, rules)
