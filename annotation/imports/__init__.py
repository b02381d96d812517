"""Turning an uploaded CSV, JSONL or image zip file into items: upload checks, validation, insert.

Rules of the format (what users are told):

- What a row holds depends on the project's task type: its `item_data_clean` checks the row's
  data (a `text`; an `image` with `width`/`height`; a pair `a`/`b` or `image_a`/`image_b`; the
  spans type's `field`), and its errors are reported by line with the column or key name
  ("text", "image", "a"). Images in CSV/JSONL are http(s) URLs; image files come in a .zip.
- CSV: UTF-8 (a BOM is allowed), a header row naming at least one of the type's item columns
  (`text`, or `image`, or `a`/`b`/`image_a`/`image_b` for pairs), matched without regard to
  case or surrounding spaces, like `gold`; every other named column is kept in the item's data.
  Empty cells of the type's own columns are left out; whole-number `width`/`height` cells are
  stored as numbers. Blank rows are skipped. Columns with an empty header name are dropped.
- JSONL (.jsonl or .ndjson): one JSON object per line, the item's data plus an optional `gold`;
  every key is kept in the item's data. Blank lines are ignored, since editors and exporters
  add them freely and they carry no data; line numbers still count them.
- `gold`, when present and not empty: for single_label one of the project's label values,
  stored as {"label": value}; for every other type an answer object in the type's stored form
  (JSONL: an object; CSV: the object as JSON text in the gold cell), checked by the type's
  `value_clean` against the item's data (errors keyed "gold.<answer field>") and stored as
  cleaned. It goes on an item with is_gold=True and is never copied into the item's data.
- Predictions (pre-labels), optional: a JSONL row's "predictions" list of {"value", "score",
  "model_name", "model_version"}; a CSV row's columns `prediction` (the answer as JSON, or a
  bare label for single label), `prediction_score`, `prediction_model`,
  `prediction_model_version` (zip metadata rows likewise). Values are checked by the type like
  gold (errors keyed "predictions[0].value.<answer field>", or the CSV column), scores are
  0..1, one per model name per row; a gold row cannot carry one. Stored in pass 2 with source
  "import" on the row's item (the existing one for a duplicate row), replacing that item's
  earlier imported predictions of the same model name. See `predicting`.
- Duplicates: an item with a text (and no image) is keyed by the SHA-256 of its text after
  Unicode NFC normalisation and stripping surrounding whitespace. Case is kept (no casefold):
  "US" and "us", or a shouted review and a calm one, are different items to label. Items
  without text (images, pairs) are keyed by the SHA-256 of their data's canonical form:
  compact JSON (separators "," and ":"), keys sorted, every string NFC-normalised, the
  original file names of uploaded images (`name`, `name_a`, `name_b`) left out. Items already
  in the project or seen earlier in the same file are skipped and counted in `duplicate_count`.
- Image zips (.zip, for types whose items may be images): png, jpeg, webp and gif files, and
  optionally one metadata.csv or metadata.jsonl at the zip's root whose rows name their image
  file in `image` (pairs: `image_a` and `image_b`), with other fields and an optional gold.
  Without metadata every image is an item. Each image is decoded with Pillow and stored once
  under items/<project id>/<sha256 of its bytes>.<ext>; the item's data holds that `image`
  path, the original `name`, `width` and `height`. Directories, __MACOSX/ and .DS_Store are
  ignored; any other entry that is not an image, an unsafe name (absolute, a drive, "..",
  backslashes), too many entries (`zips.MAX_ENTRIES`), too many bytes declared or read
  (`zips.MAX_TOTAL_BYTES`), too many pixels (`zips.MAX_IMAGE_PIXELS`) fail the import with the
  entry named in the error's "file" (and metadata errors with their line). See `zips`.
- At most MAX_ROWS rows per file (the import keeps a 32-byte hash per row in memory).

An import is all-or-nothing: the file is validated first (pass 1, progress committed as it goes,
so pages polling the job see it move) and items are inserted only when no row has an error
(pass 2, one transaction, COPY on PostgreSQL). Both passes stream the file from storage; pass 2
reuses pass 1's hashes and sends JSONL lines without a gold or predictions key (whose data the
type kept as it was) to COPY as they are. A zip's images are written to storage only in pass 2,
for new items only, and deleted again if the insert fails.

Modules: `upload` (checks and stores the file, creates the job), `parsing` (reads rows),
`rules` (RowRules: what a row of the project's task type must hold), `predicting` (rows'
predictions: checks and pass 2's writes), `services` (runs a job:
pass 1, then pass 2 under the project's lock), `inserting` (pass 2's writes and duplicate
check), `zips` (image zips). Names with a leading underscore are private to this package. The
constants are read where they are defined: patch them on that module
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
    data_hash,
)
from annotation.imports.rules import RowRules
from annotation.imports.services import (
    MAX_ERRORS,
    MAX_ROWS,
    PROGRESS_EVERY,
    PROGRESS_SECONDS,
    TOO_MANY_ROWS,
    import_run,
)
from annotation.imports.upload import EXTENSIONS, import_job_create
from annotation.imports.zips import ZIP

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
    "ZIP",
    "ImportRow",
    "Issue",
    "RowRules",
    "Writer",
    "content_hash",
    "data_hash",
    "import_job_create",
    "import_run",
]
