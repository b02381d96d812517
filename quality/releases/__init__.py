"""Versioned dataset releases: selectors, services and the build.

A release freezes what it contains when it is created (item and annotation id cutoffs plus a
snapshot of the project's settings) and is built later, by a task, into three files kept in
Django's default storage under releases/<project_id>/v<version>/:

- data.jsonl: one JSON object per released item (sorted keys, compact separators);
- data.csv: the same rows flattened (item data as JSON in the `data` column);

Each row's `label` is the quality engine's consensus: an expert's review decision (made before
the release was created) when there is one, with `confidence` 1.0 and `expert_reviewed` true;
else the engine's ItemScore label and confidence; else the majority vote with its vote share.
`agreement` stays the plain vote share.
- manifest.json: what the release is, its counts, agreement, and the files' sha256 and size.

Released items are those with id <= item_cutoff_id that have at least one annotation with
id <= annotation_cutoff_id. Gold items are included (they are part of the owner's dataset) and
flagged with `is_gold`; their gold answers are not exported. Only owners and reviewers can
read a release. With `include_raw`, each item also lists its annotations with a pseudonymous
annotator id that is stable within the project and never a username or email, unless the
owner also asks for `include_identities`: then each annotation carries the annotator's
username, email and the external platform ids of the project's studies. CSV cells that a
spreadsheet would read as a formula (= + - @ tab CR) are prefixed with '.

The files contain nothing that depends on when they were built, so building the same release
twice gives byte-identical files; a ready release is never rebuilt.

Modules: `selectors` (who may read a project's releases, one release, its label table),
`services` (create, retry, open a file for download), `building` (the streaming build),
`writing` (the data files and the files beyond them), `manifest` (manifest.json and
publication). Constants are read where they are defined: patch them there
(`quality.releases.building.CHUNK_SIZE`), not on this package.
"""

from __future__ import annotations

from quality.releases.building import CHUNK_SIZE, annotator_pseudonym, release_build
from quality.releases.manifest import CONSENSUS_METHOD, MANIFEST_FILE
from quality.releases.selectors import (
    project_get_for_releases,
    release_get_for_user,
    release_label_rows,
    release_list_for_project,
    release_may_manage,
)
from quality.releases.services import (
    CONTENT_TYPES,
    SNAPSHOT_FIELDS,
    ReleaseDownload,
    ReleaseIntegrityError,
    release_create,
    release_download_name,
    release_file_open,
    release_formats,
    release_retry,
)
from quality.releases.storage_publish import release_storage_dir
from quality.releases.writing import DATA_FILES, csv_safe

__all__ = [
    "CHUNK_SIZE",
    "CONSENSUS_METHOD",
    "CONTENT_TYPES",
    "DATA_FILES",
    "MANIFEST_FILE",
    "SNAPSHOT_FIELDS",
    "ReleaseDownload",
    "ReleaseIntegrityError",
    "annotator_pseudonym",
    "csv_safe",
    "project_get_for_releases",
    "release_build",
    "release_create",
    "release_download_name",
    "release_file_open",
    "release_formats",
    "release_get_for_user",
    "release_label_rows",
    "release_list_for_project",
    "release_may_manage",
    "release_retry",
    "release_storage_dir",
]
