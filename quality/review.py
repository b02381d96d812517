"""Expert review: the queue of doubtful items, one item as a reviewer sees it, and decisions.

An item whose consensus stays in doubt after its maximum overlap waits in state "review".
Owners and reviewers (annotation.access.MANAGERS) work through the queue, lowest confidence
first, and may also open any item of the project directly. Workers are shown by per-item
pseudonyms ("Worker A", "Worker B", in the order they first answered), never by username.
A decision is final: the ItemScore takes its label with confidence 1.0 and state "reviewed" at
once, and the next recompute keeps it so (the latest decision of an item wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from annotation.models import Annotation, Item, Project
from annotation.task_types import task_type_get
from core.audit import audit_record
from quality.models import ItemScore, ReviewDecision, WorkerScore
from quality.services import quality_recompute_schedule

Action = ReviewDecision.Action


def review_queue(*, project: Project, reviewer: AbstractBaseUser) -> QuerySet[ItemScore]:
    """Items of `project` waiting for review, lowest confidence first, with their item.

    Items the reviewer labeled themselves are left out: a second look must be independent.
    Access (owners and reviewers only) is checked by the caller with project_access.
    """
    own = Annotation.objects.filter(item_id=OuterRef("item_id"), author_id=reviewer.pk)
    return (
        ItemScore.objects.filter(project_id=project.pk, state=ItemScore.State.REVIEW)
        .filter(~Exists(own))
        .select_related("item")
        .order_by("confidence", "item_id")
    )


def review_queue_count(*, project: Project, reviewer: AbstractBaseUser) -> int:
    """How many items wait for this reviewer in `project` (one query)."""
    return review_queue(project=project, reviewer=reviewer).count()


def review_queue_next(
    *, project: Project, reviewer: AbstractBaseUser, after: int | None = None
) -> ItemScore | None:
    """The first queued item after item `after` in queue order, wrapping to the start.

    Skipping or deciding an item moves on to the one behind it; skipped items come round
    again once the end of the queue is reached. None when the queue is empty (or holds only
    `after`).
    """
    queue = review_queue(project=project, reviewer=reviewer)
    if after is None:
        return queue.first()
    current = ItemScore.objects.filter(project_id=project.pk, item_id=after).first()
    others = queue.exclude(item_id=after)
    if current is not None:
        behind = others.filter(
            Q(confidence__gt=current.confidence)
            | Q(confidence=current.confidence, item_id__gt=after)
        ).first()
        if behind is not None:
            return behind
    return others.first()


@dataclass(frozen=True)
class ReviewAnswer:
    """One worker's latest answer on the item, under the item's pseudonym for them."""

    pseudonym: str
    label: str
    reliability: float | None
    excluded: bool


@dataclass(frozen=True)
class PosteriorBar:
    """One label's share of belief: the model's posterior, or the vote share without one."""

    label: str
    hotkey: str
    probability: float
    votes: int


@dataclass(frozen=True)
class ItemReview:
    """Everything the review page and API show for one item (read in a fixed few queries)."""

    project: Project
    item: Item
    score: ItemScore | None
    answers: list[ReviewAnswer]
    bars: list[PosteriorBar]
    has_posterior: bool
    decision: ReviewDecision | None
    labels: list[dict[str, str]] = field(default_factory=list)

    @property
    def consensus_label(self) -> str:
        """The engine's label, else the plain majority; "" before anyone answered."""
        if self.score is None:
            return ""
        return self.score.label or self.score.majority_label

    @property
    def confidence(self) -> float | None:
        if self.score is None or not self.consensus_label:
            return None
        if self.score.label:
            return self.score.confidence
        return self.score.agreement  # majority vote only: the winning vote share

    @property
    def answered_labels(self) -> set[str]:
        return {answer.label for answer in self.answers}

    @property
    def state(self) -> str:
        return self.score.state if self.score else ItemScore.State.OPEN

    @property
    def is_reviewed(self) -> bool:
        return self.state == ItemScore.State.REVIEWED

    def action_for(self, label: str) -> str:
        """What choosing `label` means: accept the consensus, pick an answer, or correct."""
        if label and label == self.consensus_label:
            return Action.ACCEPTED
        if label in self.answered_labels:
            return Action.PICKED
        return Action.CORRECTED


def pseudonym(index: int) -> str:
    """'Worker A' … 'Worker Z', then 'Worker AA', 'Worker AB', … (spreadsheet columns)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"Worker {letters}"


def item_review_get(*, project: Project, item_id: int) -> ItemReview:
    """One item of `project` as a reviewer sees it; Http404 when it is not in the project.

    Each worker's latest answer is shown once, named by the order of their first answer on
    the item, so pseudonyms are stable as long as the item's answers are. Four queries.
    """
    item = Item.objects.filter(project_id=project.pk, pk=item_id).first()
    if item is None:
        raise Http404("No such item in this project.")
    score = ItemScore.objects.filter(item_id=item.pk).first()
    votes = list(
        Annotation.objects.filter(item_id=item.pk, superseded_at__isnull=True)
        .order_by("id")
        .values_list("author_id", "value")
    )
    task_type = task_type_get(project.task_type)
    key = task_type.category_key
    latest: dict[int, str] = {}
    for author_id, value in votes:  # id order: first answers fix the order, later ones win
        # A category as it is, or a structured answer's short summary (spans, boxes, text).
        answer = value.get(key) if key and isinstance(value, dict) else task_type.summary(value)
        latest[author_id] = "" if answer is None else str(answer)
    worker_rows = {
        row["worker_id"]: row
        for row in WorkerScore.objects.filter(
            project_id=project.pk, worker_id__in=list(latest)
        ).values("worker_id", "reliability", "excluded")
    }
    answers = [
        ReviewAnswer(
            pseudonym=pseudonym(index),
            label=label,
            reliability=worker_rows.get(author_id, {}).get("reliability"),
            excluded=bool(worker_rows.get(author_id, {}).get("excluded", False)),
        )
        for index, (author_id, label) in enumerate(latest.items())
    ]
    decision = ReviewDecision.objects.filter(item_id=item.pk).select_related("reviewer").first()
    bars, has_posterior = _bars(project=project, score=score, answers=answers)
    return ItemReview(
        project=project,
        item=item,
        score=score,
        answers=answers,
        bars=bars,
        has_posterior=has_posterior,
        decision=decision,
        labels=[dict(label) for label in project.labels],
    )


def _bars(
    *, project: Project, score: ItemScore | None, answers: list[ReviewAnswer]
) -> tuple[list[PosteriorBar], bool]:
    """Per label of the label set: the posterior if the engine gave one, else the vote share."""
    votes: dict[str, int] = {}
    for answer in answers:
        votes[answer.label] = votes.get(answer.label, 0) + 1
    posterior: dict[str, Any] = score.posterior if score and score.posterior else {}
    total = sum(votes.values())
    bars = []
    for label in project.labels:
        value = label["value"]
        if posterior:
            probability = float(posterior.get(value, 0.0) or 0.0)
        else:
            probability = votes.get(value, 0) / total if total else 0.0
        bars.append(
            PosteriorBar(
                label=value,
                hotkey=label.get("hotkey", ""),
                probability=probability,
                votes=votes.get(value, 0),
            )
        )
    return bars, bool(posterior)


def review_decide(
    *, item: Item, reviewer: AbstractBaseUser, action: str, label: str = ""
) -> ReviewDecision:
    """Record an expert's final answer for `item` and apply it to its ItemScore at once.

    `accepted` takes the consensus (label may be left blank), `picked` must name a label a
    worker gave, `corrected` any label of the project's label set. Raises ValidationError
    (field errors on "action"/"label") and stores nothing when the decision is invalid.
    Locks the item's ItemScore row; schedules a quality recompute after commit; records
    "review.decide" with the consensus the decision overrode. The caller has checked that
    `reviewer` may review the project.
    """
    project = item.project
    review = item_review_get(project=project, item_id=item.pk)
    label = _decision_label_clean(review=review, action=action, label=label)
    with transaction.atomic():
        now = timezone.now()
        score = ItemScore.objects.select_for_update().filter(item_id=item.pk).first()
        decision = ReviewDecision.objects.create(
            project=project,
            item=item,
            reviewer=reviewer,
            value={"label": label},
            action=action,
            consensus_label=(score.label or score.majority_label) if score else "",
            consensus_confidence=review.confidence,
        )
        if score is None:  # an item opened directly before the engine ever scored it
            ItemScore.objects.create(
                item=item,
                project=project,
                label=label,
                confidence=1.0,
                state=ItemScore.State.REVIEWED,
                computed_at=now,
            )
        else:
            score.label, score.confidence = label, 1.0
            score.state = ItemScore.State.REVIEWED
            score.save(update_fields=["label", "confidence", "state"])
        previous = review.decision
        audit_record(
            actor=reviewer,
            project=project,
            action="review.decide",
            target=f"item {item.pk}",
            details={
                "item": item.pk,
                "action": action,
                "label": label,
                "consensus": {
                    "label": decision.consensus_label,
                    "confidence": decision.consensus_confidence,
                },
                "previous_decision": (
                    previous.value.get("label")
                    if previous and isinstance(previous.value, dict)
                    else None
                ),
            },
        )
        quality_recompute_schedule(project_id=project.pk)
    return decision


def _decision_label_clean(*, review: ItemReview, action: str, label: str) -> str:
    """The label the decision stores, or ValidationError naming the offending field."""
    if action not in Action.values:
        raise ValidationError({"action": [f"Choose one of: {', '.join(Action.values)}."]})
    if action == Action.ACCEPTED:
        consensus = review.consensus_label
        if not consensus:
            raise ValidationError(
                {"action": ["This item has no consensus to accept yet: pick or correct."]}
            )
        if label and label != consensus:
            raise ValidationError(
                {
                    "label": [
                        f"Accepting keeps the consensus {consensus!r}; pick or correct instead."
                    ]
                }
            )
        return consensus
    if label not in review.project.label_values:
        raise ValidationError({"label": [f"{label!r} is not in the project's label set."]})
    if action == Action.PICKED and label not in review.answered_labels:
        raise ValidationError({"label": [f"No worker answered {label!r}; correct instead."]})
    return label
