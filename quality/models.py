"""Quality results (consensus, agreement, worker accuracy) and versioned dataset releases."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from annotation.models import Item, Project


class Method(models.TextChoices):
    """Truth-inference methods a project can choose (quality.inference.METHODS)."""

    AUTO = "auto", "Automatic (adapts to the data)"
    MV = "mv", "Majority vote"
    WMV = "wmv", "Gold-weighted majority vote"
    DS = "ds", "Dawid-Skene"
    ONECOIN = "onecoin", "One-coin Dawid-Skene"
    GLAD = "glad", "GLAD"
    MACE = "mace", "MACE"


class QualityConfig(models.Model):
    """A project's quality rules: consensus method, doubt handling, adaptive gold, spam rules."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="quality")
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.AUTO)
    # Adaptive overlap and review: an item whose confidence stays below the threshold once
    # its target is reached gets one more annotator, up to max_overlap; then expert review.
    confidence_threshold = models.FloatField(default=0.7)
    max_overlap = models.PositiveSmallIntegerField(default=5)
    review_enabled = models.BooleanField(default=True)
    # Adaptive gold.
    gold_rate_onboarding = models.FloatField(default=0.5)
    gold_rate_floor = models.FloatField(default=0.05)
    gold_onboarding_count = models.PositiveSmallIntegerField(default=8)
    gold_accuracy_bar = models.FloatField(default=0.8)
    gold_retire_after = models.PositiveIntegerField(
        default=50, help_text="Retire a gold item once this many workers have seen it."
    )
    # Routing: workers at or above this reliability get doubtful items first.
    reliable_bar = models.FloatField(default=0.85)
    skill_name = models.CharField(
        max_length=100, blank=True, help_text="Skill that gold answers on this project update."
    )
    # Spam and fraud rules: a list of {signal, op, threshold, min_evidence, action}.
    spam_rules = models.JSONField(default=list, blank=True)
    auto_actions = models.BooleanField(
        default=True, help_text="Apply rule actions automatically (otherwise only flag)."
    )
    # Quality-linked approval (quality.services.approval): a rule is off while its bar is
    # empty. An answer meeting either enabled rule is approved; with approval_reject, one
    # that clearly fails an enabled rule (and meets none) is rejected with the reason.
    approval_gold_bar = models.FloatField(
        null=True,
        blank=True,
        help_text="Approve the answers of workers whose gold accuracy (95% lower bound) "
        "is at least this.",
    )
    approval_gold_min = models.PositiveSmallIntegerField(
        default=10, help_text="Gold answers a worker needs before the gold rule applies."
    )
    approval_consensus = models.FloatField(
        null=True,
        blank=True,
        help_text="Approve answers that agree with a consensus at least this confident.",
    )
    approval_reject = models.BooleanField(
        default=False, help_text="Reject answers that clearly fail an approval rule."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(confidence_threshold__gte=0, confidence_threshold__lte=1),
                name="quality_config_threshold_range",
            ),
        ]

    def __str__(self) -> str:
        return f"QualityConfig {self.project_id}"

    @property
    def approval_enabled(self) -> bool:
        return self.approval_gold_bar is not None or self.approval_consensus is not None

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for name in ("approval_gold_bar", "approval_consensus"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0 < value <= 1):
                errors[name] = ["Above 0 and at most 1, or empty to turn the rule off."]
        count = self.approval_gold_min
        if not isinstance(count, int) or count < 1:
            errors["approval_gold_min"] = ["At least 1."]
        if self.approval_reject and not errors and not self.approval_enabled:
            errors["approval_reject"] = ["Set a gold or consensus bar first: nothing to reject by."]
        if errors:
            raise ValidationError(errors)


class ItemScore(models.Model):
    """The current consensus for one item: label, posterior, confidence, and what to do next."""

    class State(models.TextChoices):
        CONFIDENT = "confident", "Confident"
        OPEN = "open", "Collecting"
        DOUBTFUL = "doubtful", "More annotators asked"
        REVIEW = "review", "Waiting for expert review"
        REVIEWED = "reviewed", "Decided by an expert"

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="score")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="item_scores")
    majority_label = models.CharField(max_length=200, blank=True)
    agreement = models.FloatField(default=0.0)
    annotation_count = models.PositiveIntegerField(default=0)
    # The inference method's answer: {label: probability}; confidence is that of `label`.
    label = models.CharField(max_length=200, blank=True)
    confidence = models.FloatField(default=0.0)
    posterior = models.JSONField(default=dict)
    method = models.CharField(max_length=16, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    # Types whose answers are not one category (spans, boxes, free text, multi-label): the
    # consensus answer in the type's stored form, by the type's own rule; `label` then holds
    # its short summary and `confidence` the rule's support. Null for categorical types.
    value = models.JSONField(null=True, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["project", "confidence"],
                name="item_score_review_idx",
                condition=models.Q(state="review"),
            ),
        ]

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
    # Gold accuracy's 95% Wilson interval, per-class recall on gold {label: recall}, the
    # inference model's reliability (probability of a correct answer), spam signals, and
    # whether the worker's labels are currently excluded from consensus.
    gold_low = models.FloatField(null=True)
    gold_high = models.FloatField(null=True)
    # Accuracy on the worker's latest gold answers (quality.services.engine.GOLD_TREND_WINDOW):
    # next to the overall figure, it shows whether the worker is getting better or worse.
    gold_recent = models.FloatField(null=True)
    class_recall = models.JSONField(default=dict)
    reliability = models.FloatField(null=True)
    signals = models.JSONField(default=dict)
    excluded = models.BooleanField(default=False)
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
    # Everything else a full recompute measures: agreement coefficients with bootstrap
    # intervals, per-label agreement, pairwise Cohen's kappa, agreement and accuracy over
    # time, the crowd-vs-gold confusion matrix, gold pool health, method chosen.
    details = models.JSONField(default=dict)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"ProjectScore {self.project_id}"


class QualityAction(models.Model):
    """An action taken on a worker by a spam/fraud rule (or by an owner), with its evidence.

    Active until undone; undoing keeps the row. Exclusion and re-queue take effect through the
    next recompute; a block goes through crowd.WorkerBlock (linked here).
    """

    class Kind(models.TextChoices):
        FLAG = "flag", "Flag for review"
        EXCLUDE = "exclude", "Exclude labels from consensus"
        REQUEUE = "requeue", "Re-queue affected items"
        BLOCK = "block", "Block the worker"

    class Source(models.TextChoices):
        RULE = "rule", "Quality rule"
        OWNER = "owner", "Owner"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="quality_actions")
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quality_actions"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.RULE)
    rule = models.CharField(max_length=200, blank=True)
    evidence = models.JSONField(default=dict)
    block = models.ForeignKey(
        "crowd.WorkerBlock", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A rule acts once per worker and kind while active: recomputes are idempotent.
            models.UniqueConstraint(
                fields=["project", "worker", "kind"],
                condition=models.Q(undone_at__isnull=True),
                name="quality_action_active_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.worker_id}@{self.project_id}"

    @property
    def is_active(self) -> bool:
        return self.undone_at is None


class ReviewDecision(models.Model):
    """An expert's final answer for an item; the latest decision wins and is marked in exports."""

    class Action(models.TextChoices):
        ACCEPTED = "accepted", "Accepted the consensus"
        PICKED = "picked", "Picked another worker's answer"
        CORRECTED = "corrected", "Corrected"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_decisions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="review_decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_decisions"
    )
    value = models.JSONField()
    action = models.CharField(max_length=16, choices=Action.choices)
    consensus_label = models.CharField(max_length=200, blank=True)
    consensus_confidence = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["item", "-id"], name="review_decision_item_idx")]

    def __str__(self) -> str:
        return f"Review {self.item_id}: {self.value}"


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
    # Owner's explicit opt-in: raw annotations also carry usernames, emails and platform ids.
    include_identities = models.BooleanField(default=False)
    # Which items and answers the release takes (quality.releases.policy): {"mode": "consensus"
    # | "confidence" | "expert", "min_confidence": float, "exclude_flagged": bool}.
    policy = models.JSONField(default=dict, blank=True)
    # The deterministic split: {"seed": int, "ratios": {"train": .8, "validation": .1,
    # "test": .1}, "group_key": "<item data field>" or ""}; empty: no split column.
    split = models.JSONField(default=dict, blank=True)
    # The owner's words for the datasheet, and the datasheet as built (Markdown).
    purpose = models.TextField(blank=True)
    licence = models.CharField(max_length=200, blank=True)
    intended_use = models.TextField(blank=True)
    datasheet = models.TextField(blank=True)
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


class ReleaseWebhook(models.Model):
    """Where a project's "release ready" notifications go: a URL and the HMAC secret."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="webhook")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"webhook {self.project_id}"


class WebhookDelivery(models.Model):
    """One attempt to deliver a release event (retried with back-off by Celery)."""

    webhook = models.ForeignKey(ReleaseWebhook, on_delete=models.CASCADE, related_name="deliveries")
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32, default="release.ready")
    attempt = models.PositiveSmallIntegerField(default=1)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    delivered = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"delivery {self.release_id} #{self.attempt}"


class LabelingRule(models.Model):
    """An owner's labeling rule: it emits a label (or spans) for the items it matches, or
    abstains. Rules run in Celery over all items (quality.rules); `stats` holds the last run's
    coverage, overlaps, conflicts and accuracy against gold and consensus."""

    class Kind(models.TextChoices):
        KEYWORDS = "keywords", "Keyword list"
        REGEX = "regex", "Regular expression"
        FIELD = "field", "Field condition"
        SPAN_PATTERN = "span_pattern", "Span pattern"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labeling_rules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    config = models.JSONField(default=dict)
    label = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    stats = models.JSONField(default=dict, blank=True)
    ran_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "id"]

    def __str__(self) -> str:
        return f"rule {self.name}"


class ModelVersion(models.Model):
    """A version of the project's built-in model (TF-IDF and logistic regression), trained in
    Celery on vetted labels; its predictions are stored as annotation.Prediction rows."""

    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    train_count = models.PositiveIntegerField(default=0)
    validation_count = models.PositiveIntegerField(default=0)
    validation_accuracy = models.FloatField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    artifact = models.CharField(max_length=500, blank=True)  # default-storage path
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    trained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="model_version_unique")
        ]

    def __str__(self) -> str:
        return f"model {self.project_id} v{self.version}"
