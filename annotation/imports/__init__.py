"""Turning an uploaded CSV or JSONL file into items: upload checks, validation, bulk insert.

Rules of the format (what users are told):

- CSV: UTF-8 (a BOM is allowed), a header row with a `text` column (matched without regard to
  case or surrounding spaces); an optional `gold` column; every other named column is kept in the
  item's data. Blank rows are skipped. Columns with an empty header name are dropped.
- JSONL (.jsonl or .ndjson): one JSON object per line with `text` (a non-empty string) and an
  optional `gold`; other keys are kept in the item's data. Blank lines are ignored, since editors
  and exporters add them freely and they carry no data; line numbers still count them.
- `gold`, when present and not empty, must be one of the project's label values; it is stored as
  {"label": value} on an item with is_gold=True and never copied into the item's data.
- Duplicates: the content hash is the SHA-256 of the text after Unicode NFC normalisation and
  stripping surrounding whitespace. Case is kept (no casefold): "US" and "us", or a shouted
  review and a calm one, are different items to label. Texts already in the project or seen
  earlier in the same file are skipped and counted in `duplicate_count`.

- At most MAX_ROWS rows per file (the import keeps a 32-byte hash per row in memory).

An import is all-or-nothing: the file is validated first (pass 1, progress committed as it goes,
so pages polling the job see it move) and items are inserted only when no row has an error
(pass 2, one transaction, COPY on PostgreSQL). Both passes stream the file from storage; pass 2
reuses pass 1's hashes and sends JSONL lines without a gold key to COPY as they are.

Modules: `upload` (checks and stores the file, creates the job), `parsing` (reads and checks
rows), `services` (runs a job: pass 1, then pass 2 under the project's lock), `inserting`
(pass 2's writes and duplicate check). Names with a leading underscore are private to this
package. The constants are read where they are defined: patch them on that module
(`annotation.imports.services.MAX_ROWS`), not on this package.
"""

from __future__ import annotations

from annotation.imports.inserting import COPY_COLUMNS, INSERT_BATCH, PRELOAD_MAX, Writer
from annotation.imports.parsing import (
    BOM,
    DECODER,
    DIGEST_SIZE,
    SUSPECT_ESCAPE,
    ImportRow,
    Issue,
    content_hash,
)
from annotation.imports.services import (
    MAX_ERRORS,
    MAX_ROWS,
    PROGRESS_EVERY,
    PROGRESS_SECONDS,
    TOO_MANY_ROWS,
    import_run,
)
from annotation.imports.upload import EXTENSIONS, import_job_create

__all__ = [
    "BOM",
    "COPY_COLUMNS",
    "DECODER",
    "DIGEST_SIZE",
    "EXTENSIONS",
    "INSERT_BATCH",
    "MAX_ERRORS",
    "MAX_ROWS",
    "PRELOAD_MAX",
    "PROGRESS_EVERY",
    "PROGRESS_SECONDS",
    "SUSPECT_ESCAPE",
    "TOO_MANY_ROWS",
    "ImportRow",
    "Issue",
    "Writer",
    "content_hash",
    "import_job_create",
    "import_run",
]
