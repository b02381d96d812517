"""Announcements from the annotation domain; receivers only enqueue work on commit."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after an annotation is stored. kwargs: project_id, item_id, annotation_id.
annotation_created = Signal()
# Sent after a label schema change commits (answers migrated or superseded). kwargs: project_id.
label_schema_changed = Signal()
