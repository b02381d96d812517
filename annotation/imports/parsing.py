"""Reading an import file: streaming its lines from storage and checking each row.

Nothing here writes: the readers yield valid rows (ImportRow) and problems (Issue) in file
order, so pass 1 can count and report them and pass 2 can read the same rows again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from annotation.models import ImportJob

DIGEST_SIZE = hashlib.sha256().digest_size
BOM = b"\xef\xbb\xbf"
# JSON escapes hiding what PostgreSQL's jsonb refuses: NUL and (unpaired) surrogates.
SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")

Issue = dict[str, Any]  # {"line": int | None, "field": str | None, "message": str}


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One valid row of an import file: what becomes an item."""

    line: int
    text: str
    data: dict[str, Any]
    gold: str | None
    data_json: str | None = None  # `data` as JSON text, when the file already holds it


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
        self.digests += _digest(row.text)
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


def _decoded_lines(stream: IO[bytes]) -> Iterator[str]:
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


# --- Fields ----------------------------------------------------------------------------------


def _gold_clean(value: Any, labels: frozenset[str], line: int) -> tuple[str | None, Issue | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, str) and value.strip() in labels:
        return value.strip(), None
    allowed = ", ".join(sorted(labels))
    return None, _issue(line, "gold", f"Unknown gold label {value!r}; use one of: {allowed}.")


def _text_issue(text: Any, line: int) -> Issue | None:
    if not isinstance(text, str) or not text.strip():
        return _issue(line, "text", "'text' must be a non-empty string.")
    return None


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
        return None, _issue(line, None, "Each line must be a JSON object with a 'text' key.")
    if SUSPECT_ESCAPE.search(raw):  # cheap test first: these escapes are rare
        for key, value in obj.items():
            why = _unstorable([key, value])
            if why:
                return None, _issue(line, key, f"The value {why}, which cannot be stored.")
    return obj, None


def _jsonl_rows(lines: Iterable[str], labels: frozenset[str]) -> Iterator[ImportRow | Issue]:
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        obj, problem = _json_object(raw, line)
        if problem is not None or obj is None:
            yield problem or _issue(line, None, "Unreadable line.")
            continue
        if "text" not in obj:
            yield _issue(line, "text", "Missing 'text'.")
            continue
        problem = _text_issue(obj["text"], line)
        gold, gold_problem = _gold_clean(obj.get("gold"), labels, line)
        if problem or gold_problem:
            yield from (p for p in (problem, gold_problem) if p)
            continue
        if "gold" in obj:
            data = {key: value for key, value in obj.items() if key != "gold"}
            yield ImportRow(line=line, text=obj["text"], data=data, gold=gold)
        else:  # the line itself is the data's JSON: COPY sends it without encoding it again
            yield ImportRow(line=line, text=obj["text"], data=obj, gold=None, data_json=raw.strip())


# --- CSV -------------------------------------------------------------------------------------


def _csv_header(header: list[str]) -> tuple[list[str], Issue | None]:
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if "text" not in lowered:
        found = ", ".join(name for name in names if name) or "no named columns"
        return names, _issue(1, "text", f"The header has no 'text' column (found: {found}).")
    for special in ("text", "gold"):
        if lowered.count(special) > 1:
            return names, _issue(1, special, f"The header has more than one '{special}' column.")
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            return names, _issue(1, name, f"The header has two columns named {name!r}.")
        seen.add(name)
    return [
        {"text": "text", "gold": "gold"}.get(low, name)
        for name, low in zip(names, lowered, strict=True)
    ], None


def _csv_rows(lines: Iterable[str], labels: frozenset[str]) -> Iterator[ImportRow | Issue]:
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _issue(1, None, f"Unreadable CSV header: {exc}.")
        return
    names, problem = _csv_header(header)
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
        row = dict(zip(names, fields, strict=True))
        text = row["text"]
        problem = _text_issue(text, line)
        gold, gold_problem = _gold_clean(row.get("gold"), labels, line)
        if problem or gold_problem:
            yield from (p for p in (problem, gold_problem) if p)
            continue
        data = {"text": text}
        data.update((k, v) for k, v in row.items() if k and k not in ("text", "gold"))
        yield ImportRow(line=line, text=text, data=data, gold=gold)


def _rows(stream: IO[bytes], job: ImportJob, labels: frozenset[str]) -> Iterator[ImportRow | Issue]:
    """Parse the file, yielding valid rows and issues in file order."""
    lines = _decoded_lines(stream)
    if job.format == ImportJob.Format.CSV:
        return _csv_rows(lines, labels)
    return _jsonl_rows(lines, labels)
