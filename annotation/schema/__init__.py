"""Changing a live project's label set: versioned label schemas and migrating answers.

An owner composes operations (rename, add, merge, split, retire, edit), previews the plan
(`schema_change_plan`: the new label set, the mapping from every old label to its new value or to
None, and what happens to answers and gold) and confirms it with the plan's token
(`schema_change_apply`). Renames and merges carry answers over in place; answers using a split or
retired label are superseded (kept for the record, no longer counted) and their items reopen for
relabeling. Every answer keeps the schema version it was made under.

Agreement, consensus and pay read only current answers: `annotations_current(queryset)`.

Modules: `operations` (checking and applying operations to the label list, describing them),
`plan` (the preview and its token), `apply` (confirming a plan, changes from the project
settings), `selectors` (current answers, schema versions).
"""

from __future__ import annotations

from annotation.schema.apply import schema_change_apply, schema_change_from_settings
from annotation.schema.operations import OPERATIONS_MAX, operation_describe
from annotation.schema.plan import SchemaPlan, schema_change_plan
from annotation.schema.selectors import annotations_current, schema_version_list

__all__ = [
    "OPERATIONS_MAX",
    "SchemaPlan",
    "annotations_current",
    "operation_describe",
    "schema_change_apply",
    "schema_change_from_settings",
    "schema_change_plan",
    "schema_version_list",
]
