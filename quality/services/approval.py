"""Quality-linked approval: the engine approves or rejects answers by the owner's rules.

Two rules, each off while its bar is empty (QualityConfig.approval_*):

* gold: the worker's gold accuracy, as the 95% Wilson lower bound over at least
  `approval_gold_min` gold answers, is at least `approval_gold_bar`;
* consensus: the answer agrees with its item's consensus, and the consensus is at least
  `approval_consensus` confident (on a gold item the known answer counts as certain).

An answer meeting either enabled rule is approved. With `approval_reject`, an answer that meets
none and clearly fails one (it contradicts a consensus that confident, or the worker's gold
accuracy is below the bar even at its 95% upper bound) is rejected with a reason the worker
reads. Anything else stays pending.

Decisions go to crowd.PayDecision with source "quality". A person's decision is never
overturned; an earlier automatic decision changes only when the engine now decides the other
way (an answer that no longer meets a rule keeps its decision, so payouts do not flicker).
Owners overturn automatic decisions from the pay pages, and the ledger follows.

Runs inside the recompute's transaction with a handful of queries whatever the project's size:
one read of the answers with their item consensus and current decision, one of worker scores,
then writes only for what changes (rows locked like crowd.pay.annotation_decide does).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import FilteredRelation, Q
from django.db.models.fields.json import KT, KeyTextTransform
from django.utils import timezone

from annotation.models import Annotation, Project
from annotation.task_types import task_type_get
from crowd.models import PayDecision, PaySettings
from crowd.pay import reward_cents_for
from quality.models import QualityConfig, WorkerScore

APPROVED = PayDecision.Status.APPROVED.value
REJECTED = PayDecision.Status.REJECTED.value
QUALITY = PayDecision.Source.QUALITY.value
CHUNK = 5000


@dataclass(frozen=True)
class ApprovalResult:
    """What one run changed: new decisions by status, and automatic ones turned around."""

    approved: int = 0
    rejected: int = 0
    overturned: int = 0

    @property
    def changed(self) -> int:
        return self.approved + self.rejected


@dataclass(frozen=True)
class _Answer:
    annotation_id: int
    worker_id: int
    is_gold: bool
    status: str
    reason: str


def approval_decisions_apply(*, project: Project, config: QualityConfig) -> ApprovalResult:
    """Approve or reject the project's answers by its approval rules (idempotent).

    Call inside the recompute, after item and worker scores are written. Returns counts of the
    decisions written; a rerun on unchanged data writes nothing and returns zeros.
    """
    if not config.approval_enabled:
        return ApprovalResult()
    wanted = _wanted_decisions(project=project, config=config)
    if not wanted:
        return ApprovalResult()
    return _decisions_write(project=project, wanted=wanted)


def approval_reason_consensus(confidence: float, *, is_gold: bool) -> str:
    """The reason a worker reads when an answer contradicts the consensus."""
    if is_gold:
        return "Did not match the known answer of this check question"
    return f"Did not match the confident consensus ({confidence:.0%})"


def approval_reason_gold(high: float, bar: float) -> str:
    """The reason a worker reads when their gold accuracy is clearly below the bar."""
    return (
        f"Accuracy on check questions too low (at most {high:.0%} with 95% confidence; "
        f"{bar:.0%} needed)"
    )


def _wanted_decisions(*, project: Project, config: QualityConfig) -> list[_Answer]:
    """Answers whose automatic decision should change, from one query over the answers."""
    # The category key of the project's type; types without one (spans, boxes, free text,
    # multi-label) have no per-answer gold check here, so only people approve their answers.
    key = task_type_get(project.task_type).category_key or "label"
    gold_bar, gold_min = config.approval_gold_bar, max(config.approval_gold_min, 1)
    consensus_bar = config.approval_consensus
    workers: dict[int, tuple[bool, bool, float]] = {}
    if gold_bar is not None:
        for worker_id, seen, low, high in WorkerScore.objects.filter(
            project_id=project.pk
        ).values_list("worker_id", "gold_seen", "gold_low", "gold_high"):
            enough = seen >= gold_min and low is not None and high is not None
            workers[worker_id] = (
                enough and low >= gold_bar,
                enough and high < gold_bar,
                high or 0.0,
            )
    rows = (
        Annotation.objects.filter(project_id=project.pk, superseded_at__isnull=True)
        .annotate(
            answer=KT(f"value__{key}"),
            gold_answer=KeyTextTransform(key, "item__gold"),
            current=FilteredRelation(
                "pay_decisions", condition=Q(pay_decisions__superseded_at__isnull=True)
            ),
        )
        .exclude(answer=None)
        .values_list(
            "id",
            "author_id",
            "answer",
            "item__is_gold",
            "gold_answer",
            "item__score__label",
            "item__score__confidence",
            "current__status",
            "current__source",
        )
        .order_by("id")
    )
    wanted: list[_Answer] = []
    for (
        annotation_id,
        worker_id,
        answer,
        is_gold,
        gold_label,
        consensus,
        confidence,
        current_status,
        current_source,
    ) in rows.iterator(chunk_size=CHUNK):
        if current_source is not None and current_source != QUALITY:
            continue  # a person decided: never overturned
        if is_gold:
            consensus, confidence = gold_label, 1.0
        status = reason = ""
        agrees = confident = False
        if consensus_bar is not None and consensus and confidence is not None:
            confident = confidence >= consensus_bar
            agrees = answer == consensus
        gold_pass, gold_fail, gold_high = workers.get(worker_id, (False, False, 0.0))
        if (consensus_bar is not None and confident and agrees) or gold_pass:
            status = APPROVED
        elif config.approval_reject and confident and not agrees:
            status = REJECTED
            reason = approval_reason_consensus(confidence, is_gold=is_gold)
        elif config.approval_reject and gold_fail:
            status = REJECTED
            reason = approval_reason_gold(gold_high, gold_bar or 0.0)
        if status and status != current_status:
            wanted.append(_Answer(annotation_id, worker_id, is_gold, status, reason))
    return wanted


def _decisions_write(*, project: Project, wanted: list[_Answer]) -> ApprovalResult:
    """Lock the answers, re-read their current decisions, supersede and insert in bulk."""
    pay = PaySettings.objects.filter(project_id=project.pk).first()
    now = timezone.now()
    new: list[PayDecision] = []
    supersede: list[int] = []
    for start in range(0, len(wanted), CHUNK):
        chunk = {answer.annotation_id: answer for answer in wanted[start : start + CHUNK]}
        # The same row lock crowd.pay.annotation_decide takes: a person deciding one of these
        # answers now waits for this transaction, and one who decided first is seen below.
        list(
            Annotation.objects.select_for_update()
            .filter(pk__in=list(chunk))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        current = {
            row[0]: row[1:]
            for row in PayDecision.objects.filter(
                annotation_id__in=list(chunk), superseded_at__isnull=True
            ).values_list("annotation_id", "pk", "status", "source")
        }
        for annotation_id, answer in chunk.items():
            if annotation_id in current:
                decision_id, status, source = current[annotation_id]
                if source != QUALITY or status == answer.status:
                    continue
                supersede.append(decision_id)
            amount = 0
            if answer.status == APPROVED and pay is not None:
                amount = reward_cents_for(pay, is_gold=answer.is_gold)
            new.append(
                PayDecision(
                    project_id=project.pk,
                    annotation_id=annotation_id,
                    worker_id=answer.worker_id,
                    status=answer.status,
                    reason=answer.reason,
                    source=QUALITY,
                    amount_cents=amount,
                )
            )
    for start in range(0, len(supersede), CHUNK):
        PayDecision.objects.filter(pk__in=supersede[start : start + CHUNK]).update(
            superseded_at=now
        )
    PayDecision.objects.bulk_create(new, batch_size=CHUNK)
    return ApprovalResult(
        approved=sum(decision.status == APPROVED for decision in new),
        rejected=sum(decision.status == REJECTED for decision in new),
        overturned=len(supersede),
    )
