"""Quality results (consensus, agreement, worker accuracy) and versioned dataset releases."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models import Item, Project


class ItemScore(models.Model):
    """The current consensus for one item: majority label and the share of votes it got."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="score")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="item_scores")
    majority_label = models.CharField(max_length=200, blank=True)
    agreement = models.FloatField(default=0.0)
    annotation_count = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"ItemScore {self.item_id}"


class WorkerScore(models.Model):
    """A worker's record on a project: volume, gold accuracy, agreement with the majority."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="worker_scores")
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="worker_scores"
    )
    annotation_count = models.PositiveIntegerField(default=0)
    gold_seen = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    majority_agreement = models.FloatField(null=True)
    median_duration_ms = models.PositiveIntegerField(null=True)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["worker_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "worker"], name="worker_score_unique")
        ]

    def __str__(self) -> str:
        return f"WorkerScore {self.worker_id}@{self.project_id}"

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_seen if self.gold_seen else None


class ProjectScore(models.Model):
    """Project-wide agreement coefficients, replaced whole by each recompute."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="score")
    fleiss_kappa = models.FloatField(null=True)
    krippendorff_alpha = models.FloatField(null=True)
    items_scored = models.PositiveIntegerField(default=0)
    annotations_scored = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"ProjectScore {self.project_id}"


class Release(models.Model):
    """A versioned dataset built from a project; immutable once built."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="releases")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200, blank=True)
    notes = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # What the release contains is fixed at creation: items and annotations up to these ids.
    item_cutoff_id = models.BigIntegerField(default=0)
    annotation_cutoff_id = models.BigIntegerField(default=0)
    config_snapshot = models.JSONField(default=dict)
    include_raw = models.BooleanField(default=False)
    manifest = models.JSONField(null=True, blank=True)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    built_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="release_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.project_id} v{self.version}"

    @property
    def tag(self) -> str:
        return f"v{self.version}"


class ReleaseFile(models.Model):
    """One file of a release, with the checksum recorded in the manifest."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="files")
    format = models.CharField(max_length=16)
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["format"]
        constraints = [
            models.UniqueConstraint(fields=["release", "format"], name="release_file_unique")
        ]

    def __str__(self) -> str:
        return self.path
