"""Projects, their items, imports and the annotations workers make."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from annotation.task_types import task_type_choices

FIELD_NAME_MAX = 100
SENSITIVE_FIELDS_MAX = 50


def sensitive_fields_validate(value: Any) -> None:
    """`Project.sensitive_fields` is a list of distinct, non-empty item data field names."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("Give a list of item data field names.")
    if len(value) > SENSITIVE_FIELDS_MAX:
        raise ValidationError(f"At most {SENSITIVE_FIELDS_MAX} sensitive fields.")
    if any(not name.strip() or len(name) > FIELD_NAME_MAX for name in value):
        raise ValidationError(f"Field names are 1 to {FIELD_NAME_MAX} characters.")
    if len(set(value)) != len(value):
        raise ValidationError("A field is listed twice.")


class Project(models.Model):
    """A labeling task over a set of items, with its instructions and label set."""

    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Markdown; rendered sanitised.")
    # One of annotation.task_types (a module per type); fixed once the project exists.
    task_type = models.CharField(max_length=32, choices=task_type_choices, default="single_label")
    # [{"value": "positive", "hotkey": "1", "colour": "#0072b2"}, ...]; validated by
    # annotation.services.labels_clean. Changed after labeling starts only through a new
    # label schema version (annotation.schema).
    labels = models.JSONField(default=list)
    # The task type's own options (scale, "none" allowed, relation labels...), validated by it.
    task_options = models.JSONField(default=dict, blank=True, db_default={})
    # The label schema version answers are made under now (LabelSchemaVersion.number).
    schema_version = models.PositiveIntegerField(default=1, db_default=1)
    # Semi-automatic labeling: show pre-labels (annotation.Prediction) to annotators, and the
    # order regular items are served in (active learning).
    suggestions_enabled = models.BooleanField(default=False, db_default=False)
    serving_order = models.CharField(
        max_length=16,
        choices=[
            ("default", "Fullest items first"),
            ("uncertainty", "Least certain prediction first"),
            ("rare_first", "Predicted rare classes first"),
        ],
        default="default",
        db_default="default",
    )
    overlap = models.PositiveSmallIntegerField(default=3)
    gold_ratio = models.FloatField(default=0.1)
    reservation_timeout_seconds = models.PositiveIntegerField(default=600)
    # Item data fields holding personal data: masked with strict rules for external pools
    # (crowd.privacy), on top of the detector every field gets.
    sensitive_fields = models.JSONField(
        default=list, blank=True, validators=[sensitive_fields_validate]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(overlap__gte=1) & Q(overlap__lte=50), name="project_overlap_range"
            ),
            models.CheckConstraint(
                condition=Q(gold_ratio__gte=0) & Q(gold_ratio__lte=0.5),
                name="project_gold_ratio_range",
            ),
            models.CheckConstraint(
                condition=Q(reservation_timeout_seconds__gte=30),
                name="project_reservation_timeout_min",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def label_values(self) -> list[str]:
        return [label["value"] for label in self.labels]


class ProjectMember(models.Model):
    """A user's role on a project: the table every access check reads.

    Annotator rows are written by crowd.services together with the pool membership that
    makes the user eligible for work, so the two never disagree.
    """

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        REVIEWER = "reviewer", "Reviewer"
        ANNOTATOR = "annotator", "Annotator"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="project_roles"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="project_member_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.project_id}:{self.role}"


class Item(models.Model):
    """One thing to label. `slots_taken` counts live reservations plus annotations.

    The counter is owned by crowd.services (claiming work) and only ever changed with F()
    under the item's row lock; the check constraint makes over-assignment impossible.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    data = models.JSONField()
    content_hash = models.CharField(max_length=64)
    gold = models.JSONField(null=True, blank=True)
    is_gold = models.BooleanField(default=False)
    target = models.PositiveSmallIntegerField(help_text="Annotations wanted for this item.")
    slots_taken = models.PositiveSmallIntegerField(default=0)
    annotation_count = models.PositiveSmallIntegerField(default=0)
    # Routing hints kept by the quality engine: doubtful items (priority > 0) go to reliable
    # workers first; a gold item seen by too many workers is retired (never served again).
    priority = models.SmallIntegerField(default=0, db_default=0)
    gold_retired = models.BooleanField(default=False, db_default=False)
    # Active learning: larger is served earlier when the project's serving_order asks for it
    # (the model's uncertainty, or how rare the predicted class is); kept by quality.
    serve_rank = models.FloatField(default=0.0, db_default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "content_hash"], name="item_unique_content_per_project"
            ),
            models.CheckConstraint(
                condition=Q(slots_taken__lte=F("target")) | Q(is_gold=True),
                name="item_slots_within_target",
            ),
            models.CheckConstraint(
                condition=Q(annotation_count__lte=F("slots_taken")) | Q(is_gold=True),
                name="item_annotations_within_slots",
            ),
        ]
        indexes = [
            # The claim query walks one of these from the top: open regular items, fullest first,
            # plain items (priority 0) first for most workers, doubtful ones first for reliable
            # workers (crowd.services.claims._claimable).
            models.Index(
                F("project"),
                F("priority"),
                F("slots_taken").desc(),
                F("id"),
                name="item_claimable_idx",
                condition=Q(is_gold=False) & Q(slots_taken__lt=F("target")),
            ),
            models.Index(
                F("project"),
                F("priority").desc(),
                F("slots_taken").desc(),
                F("id"),
                name="item_claimable_doubtful_idx",
                condition=Q(is_gold=False) & Q(slots_taken__lt=F("target")),
            ),
            # Gold still in service (a retired gold item is never served again).
            models.Index(
                fields=["project", "id"],
                name="item_gold_idx",
                condition=Q(is_gold=True) & Q(gold_retired=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Item {self.pk}"

    @property
    def text(self) -> str:
        return str(self.data.get("text", ""))

    @property
    def state(self) -> str:
        if self.annotation_count >= self.target:
            return "complete"
        return "in_progress" if self.slots_taken else "open"


class ImportJob(models.Model):
    """An uploaded CSV or JSONL file and the progress of turning it into items."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSONL"
        ZIP = "zip", "Image zip"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    format = models.CharField(max_length=8, choices=Format.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    # [{"line": 3, "field": "text", "message": "..."}]
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Import {self.pk} ({self.status})"

    @property
    def progress(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        return self.processed_rows / self.total_rows if self.total_rows else 0.0

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class Annotation(models.Model):
    """One worker's answer for one item. Never updated: a correction is a new annotation."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotations")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="annotations")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations"
    )
    value = models.JSONField(help_text="The answer in its task type's stored form.")
    # The label schema version the answer was made under, and when a later schema change left
    # it without a counterpart (a split or retired label): superseded answers stay for the record
    # but no longer count in agreement, consensus or pay, and their items go back for relabeling.
    schema_version = models.PositiveIntegerField(default=1, db_default=1)
    superseded_at = models.DateTimeField(null=True, blank=True)
    # The pre-label the annotator was shown (None: no suggestion) and whether the answer is it,
    # unchanged.
    suggestion = models.ForeignKey(
        "Prediction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    suggestion_accepted = models.BooleanField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # Keyed hash of the submitting client's network address and user agent ("" when unknown),
    # so the fraud detector can see several accounts behind one device without storing the IP.
    client_key = models.CharField(max_length=32, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "id"], name="annotation_project_idx"),
            models.Index(fields=["item", "id"], name="annotation_item_idx"),
        ]

    def __str__(self) -> str:
        return f"Annotation {self.pk}"

    @property
    def label(self) -> str | None:
        return self.value.get("label") if isinstance(self.value, dict) else None


class LabelSchemaVersion(models.Model):
    """One version of a project's label set and options, with how it came from the previous.

    Version 1 is the configuration at creation. Each later version records the owner's
    operations (rename, add, merge, split, retire) and the confirmed `mapping` from every old
    label value to its new value, or to null when answers with it must be relabeled.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="schema_versions")
    number = models.PositiveIntegerField()
    labels = models.JSONField(default=list)
    task_options = models.JSONField(default=dict, blank=True)
    operations = models.JSONField(default=list, blank=True)
    mapping = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    migrated_count = models.PositiveIntegerField(default=0)
    superseded_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="schema_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} v{self.number}"


class Prediction(models.Model):
    """A pre-label for an item: an answer in the task type's stored form, from an owner's model
    (imported or sent through the API), a labeling rule, or the built-in model."""

    class Source(models.TextChoices):
        IMPORT = "import", "Imported"
        API = "api", "Sent through the API"
        RULE = "rule", "Labeling rules"
        MODEL = "model", "Built-in model"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="predictions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="predictions")
    value = models.JSONField()
    score = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    model_name = models.CharField(max_length=200, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "source", "model_name", "model_version"],
                name="prediction_unique_per_model",
            )
        ]
        indexes = [models.Index(fields=["project", "source"], name="prediction_project_idx")]

    def __str__(self) -> str:
        return f"Prediction {self.pk} ({self.source})"
