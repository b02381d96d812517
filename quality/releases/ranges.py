"""HTTP byte ranges (RFC 9110 §14) for release downloads: one range per request.

`bytes=a-b`, `bytes=a-` and `bytes=-n` are served as one 206 part. A header that is not a
single well-formed bytes range (several ranges, another unit, garbage) is ignored and the whole
file is served, as the RFC allows; a well-formed range that starts past the end of the file is
unsatisfiable (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO

RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiableError(Exception):
    """The requested range lies entirely outside the file."""


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range within a file of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def byte_range_parse(header: str | None, size: int) -> ByteRange | None:
    """The single range a Range header asks for in a file of `size` bytes, or None to serve
    the whole file; raises RangeNotSatisfiableError (answer 416) when it selects no byte."""
    if not header:
        return None
    match = RANGE_RE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix range: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError
        return ByteRange(start=max(size - suffix, 0), end=size - 1, size=size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid range-spec: ignored like any malformed header
    if start >= size:
        raise RangeNotSatisfiableError
    return ByteRange(start=start, end=min(end, size - 1), size=size)


class FileSlice:
    """A read-only view of `length` bytes of an open file from its current position."""

    def __init__(self, file: IO[bytes], length: int) -> None:
        self._file = file
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        chunk = self._file.read(size)
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._file.close()
