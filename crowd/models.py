"""Workers, the pools they belong to, and their claims (assignments) on items."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Annotation, Item, Project


class Pool(models.Model):
    """A group of workers with one set of rules (internal experts, internal or external crowd)."""

    class Kind(models.TextChoices):
        INTERNAL_EXPERTS = "internal_experts", "Internal experts"
        INTERNAL_CROWD = "internal_crowd", "Internal crowd"
        EXTERNAL_CROWD = "external_crowd", "External crowd"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.INTERNAL_CROWD)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class PoolMember(models.Model):
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pool_memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "user"], name="pool_member_unique")]

    def __str__(self) -> str:
        return f"{self.user_id}@pool{self.pool_id}"


class ProjectPool(models.Model):
    """A pool a project draws workers from, and what its members do there."""

    class Rule(models.TextChoices):
        LABEL = "label", "Label items"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="project_pools")
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="project_pools")
    rule = models.CharField(max_length=16, choices=Rule.choices, default=Rule.LABEL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "pool"], name="project_pool_unique")
        ]

    def __str__(self) -> str:
        return f"pool{self.pool_id}->project{self.project_id}"


class Assignment(models.Model):
    """A worker's claim on one item. One per (item, worker), ever: nobody sees an item twice."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RESERVED)
    annotation = models.OneToOneField(
        Annotation, null=True, blank=True, on_delete=models.PROTECT, related_name="assignment"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "worker"], name="assignment_once_per_worker"),
            models.CheckConstraint(
                condition=Q(status="submitted", annotation__isnull=False)
                | (~Q(status="submitted") & Q(annotation__isnull=True)),
                name="assignment_submitted_has_annotation",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "expires_at"],
                name="assignment_live_idx",
                condition=Q(status="reserved"),
            ),
            models.Index(fields=["worker", "project", "status"], name="assignment_worker_idx"),
        ]

    def __str__(self) -> str:
        return f"Assignment {self.pk} ({self.status})"
