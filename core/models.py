"""The shared kernel's one table: the audit log of owner and reviewer actions."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One owner or reviewer action (or the system's): who, when, what, on what.

    `project` is null for site-wide actions, `actor` for the system and the quality engine.
    `details` holds what changed (before/after for settings). Rows are only ever inserted.
    """

    # String references: core imports no app, the foreign keys still point at their tables.
    project = models.ForeignKey(
        "annotation.Project",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    action = models.CharField(max_length=50)
    target = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["project", "-id"], name="core_audit_project_id"),
            models.Index(fields=["project", "action", "-id"], name="core_audit_project_action"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target}".strip()
