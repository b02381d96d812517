"""The one sanctioned use of signals: enqueue quality work after an annotation is stored, or
after a label schema change migrated or superseded answers."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from annotation.signals import annotation_created, label_schema_changed


@receiver(label_schema_changed, dispatch_uid="quality-schedule-recompute-schema")
@receiver(annotation_created, dispatch_uid="quality-schedule-recompute")
def schedule_quality_recompute(sender: Any, project_id: int, **kwargs: Any) -> None:
    from quality.services import quality_recompute_schedule

    quality_recompute_schedule(project_id=project_id)
