"""Workers, the pools they belong to, and their claims (assignments) on items."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

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
        REVIEW = "review", "Review items (experts)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="project_pools")
    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="project_pools")
    rule = models.CharField(max_length=16, choices=Rule.choices, default=Rule.LABEL)
    # Whether this pool's members see pre-labels (when the project shows them at all): e.g.
    # shown to experts, hidden from the external crowd so they stay independent.
    show_suggestions = models.BooleanField(default=True, db_default=True)

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


class WorkerBlock(models.Model):
    """A worker barred from a project or a pool, by an owner or by the quality engine.

    A block is active until lifted; lifting keeps the row as history. Exactly one of project
    and pool is set.
    """

    class Source(models.TextChoices):
        OWNER = "owner", "Owner"
        QUALITY = "quality", "Quality engine"

    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blocks"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="worker_blocks"
    )
    pool = models.ForeignKey(
        Pool, null=True, blank=True, on_delete=models.CASCADE, related_name="worker_blocks"
    )
    reason = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.OWNER)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(project__isnull=False, pool__isnull=True)
                | Q(project__isnull=True, pool__isnull=False),
                name="worker_block_one_scope",
            ),
            models.UniqueConstraint(
                fields=["worker", "project"],
                condition=Q(lifted_at__isnull=True, project__isnull=False),
                name="worker_block_active_project",
            ),
            models.UniqueConstraint(
                fields=["worker", "pool"],
                condition=Q(lifted_at__isnull=True, pool__isnull=False),
                name="worker_block_active_pool",
            ),
        ]

    def __str__(self) -> str:
        scope = f"project{self.project_id}" if self.project_id else f"pool{self.pool_id}"
        return f"block {self.worker_id}@{scope}"

    @property
    def is_active(self) -> bool:
        return self.lifted_at is None


class WorkerStanding(models.Model):
    """How the assignment engine treats one worker on one project, kept by the quality engine.

    `gold_rate` is the share of claims that are gold for this worker (adaptive gold: high while
    onboarding, low once reliable, high again when accuracy drops); None means the project's
    gold ratio. `reliable` workers are offered doubtful items (Item.priority > 0) first.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="standings")
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="standings"
    )
    gold_rate = models.FloatField(null=True, blank=True)
    reliable = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "worker"], name="worker_standing_unique"),
            models.CheckConstraint(
                condition=Q(gold_rate__isnull=True) | Q(gold_rate__gte=0, gold_rate__lte=1),
                name="worker_standing_gold_rate_range",
            ),
        ]

    def __str__(self) -> str:
        return f"standing {self.worker_id}@{self.project_id}"


class WorkerSkill(models.Model):
    """A per-worker, per-skill score from 0 to 100, kept up to date from gold accuracy."""

    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skills"
    )
    name = models.CharField(max_length=100)
    score = models.FloatField()
    evidence = models.PositiveIntegerField(default=0, help_text="Gold answers behind the score.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["worker", "name"], name="worker_skill_unique"),
            models.CheckConstraint(
                condition=Q(score__gte=0, score__lte=100), name="worker_skill_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.score:.0f} ({self.worker_id})"


class PaySettings(models.Model):
    """What a project pays: a reward per approved annotation (gold answers optionally apart),
    in integer cents of one currency, and the hourly floor of the fair-pay monitor.

    A project without a row pays nothing and uses ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="pay_settings")
    currency = models.CharField(max_length=3, default="USD")
    reward_cents = models.PositiveIntegerField(default=0)
    gold_reward_cents = models.PositiveIntegerField(
        null=True, blank=True, help_text="Reward for an answer on a gold item; empty: as others."
    )
    fair_pay_floor_cents_per_hour = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the site default."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "pay settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="pay_settings_currency_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"pay {self.project_id}: {self.reward_cents} {self.currency}"


class PayDecision(models.Model):
    """Approval or rejection of one annotation. Append-only: overturning a decision supersedes
    the current row and adds a new one, so the ledger follows and the history stays.

    `amount_cents` is the reward owed, frozen when the decision is made (0 for rejections).
    """

    class Status(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    class Source(models.TextChoices):
        OWNER = "owner", "Owner"
        REVIEWER = "reviewer", "Reviewer"
        QUALITY = "quality", "Quality engine"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pay_decisions")
    annotation = models.ForeignKey(
        Annotation, on_delete=models.CASCADE, related_name="pay_decisions"
    )
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="pay_decisions"
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    amount_cents = models.PositiveIntegerField(default=0)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["annotation"],
                condition=Q(superseded_at__isnull=True),
                name="pay_decision_one_current",
            ),
            models.CheckConstraint(
                condition=Q(status="approved") | (Q(amount_cents=0) & ~Q(reason="")),
                name="pay_decision_rejection_has_reason",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "worker", "created_at"],
                name="pay_decision_ledger_idx",
                condition=Q(superseded_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.status} annotation{self.annotation_id} ({self.source})"


class Bonus(models.Model):
    """Extra pay granted to a worker on a project, with a note the worker reads."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="bonuses")
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bonuses"
    )
    amount_cents = models.PositiveIntegerField()
    note = models.TextField()
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="bonus_positive"),
            models.CheckConstraint(condition=~Q(note=""), name="bonus_has_note"),
        ]
        indexes = [
            models.Index(fields=["project", "worker", "created_at"], name="bonus_ledger_idx")
        ]

    def __str__(self) -> str:
        return f"bonus {self.amount_cents} to {self.worker_id}@{self.project_id}"


class PoolInvite(models.Model):
    """A link that lets whoever holds it join a pool, until it expires or is used up."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(uses__lte=F("max_uses")), name="pool_invite_uses"),
        ]

    def __str__(self) -> str:
        return f"invite to pool{self.pool_id}"


class ProjectRequirement(models.Model):
    """What a worker must have to get work on a project; checked on every next-item call."""

    class Kind(models.TextChoices):
        SKILL = "skill", "Skill at or above a score"
        APPROVED = "approved", "Approved annotations (any project)"
        POOL = "pool", "Member of a pool"
        QUALIFICATION = "qualification", "Passed the project's qualification test"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="requirements")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    skill_name = models.CharField(max_length=100, blank=True)
    min_score = models.FloatField(null=True, blank=True)
    min_count = models.PositiveIntegerField(null=True, blank=True)
    pool = models.ForeignKey(
        Pool, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="skill", min_score__isnull=False) & ~Q(skill_name=""))
                | Q(kind="approved", min_count__isnull=False)
                | Q(kind="pool", pool__isnull=False)
                | Q(kind="qualification"),
                name="project_requirement_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} requirement on project{self.project_id}"


class Qualification(models.Model):
    """A project's qualification test: gold items a worker labels before any regular work."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="qualification")
    items = models.ManyToManyField(Item, related_name="qualifications")
    pass_mark = models.FloatField(default=0.8, help_text="Share of test items right to pass.")
    attempts_allowed = models.PositiveSmallIntegerField(default=2)
    cooldown_seconds = models.PositiveIntegerField(default=86_400)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(pass_mark__gte=0, pass_mark__lte=1), name="qualification_pass_mark"
            ),
        ]

    def __str__(self) -> str:
        return f"qualification for project{self.project_id}"


class QualificationAttempt(models.Model):
    """One go at a qualification test; `passed` is set when every test item is answered."""

    qualification = models.ForeignKey(
        Qualification, on_delete=models.CASCADE, related_name="attempts"
    )
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="qualification_attempts"
    )
    answers = models.JSONField(default=dict, help_text="{item id: label}")
    correct = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    passed = models.BooleanField(null=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["qualification", "worker"],
                condition=Q(finished_at__isnull=True),
                name="qualification_attempt_one_open",
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.worker_id}@qualification{self.qualification_id}"


class ExternalStudy(models.Model):
    """A project's entry link for a recruitment platform (Prolific, Mechanical Turk)."""

    class Platform(models.TextChoices):
        PROLIFIC = "prolific", "Prolific"
        MTURK = "mturk", "Mechanical Turk"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="studies")
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="studies")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    slug = models.CharField(max_length=64, unique=True)
    quota = models.PositiveIntegerField(default=20, help_text="Items a worker labels per visit.")
    completion_code = models.CharField(max_length=64)
    return_url = models.URLField(blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.platform} study {self.slug}"


class ExternalIdentity(models.Model):
    """The account behind an external worker id: created on first arrival, resumed after."""

    study = models.ForeignKey(ExternalStudy, on_delete=models.CASCADE, related_name="identities")
    external_id = models.CharField(max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities"
    )
    study_ref = models.CharField(max_length=200, blank=True)
    session_ref = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "external_id"], name="external_identity_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"external worker of study{self.study_id}"
