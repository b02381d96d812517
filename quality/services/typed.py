"""The quality run of task types whose answers are not one category each.

Spans, boxes, free text and multi-label answers are structured; the truth-inference models of
`quality.inference` need one category per answer. For these types each item's consensus is the
type's own rule (annotation.task_types: majority spans, clustered boxes, the most common
normalised text, per-label majority), the item's confidence is the rule's support, and the
project's agreement figures are the type's measures. Everything else follows the categorical
run: excluded workers' answers do not count, superseded answers (an older label schema) do not
count, an expert's latest review decision is the item's answer, adaptive overlap raises targets
of doubtful items and sends them to review, and only changed ItemScore rows are written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import Max

from annotation.models import Annotation, Item, Project
from annotation.task_types import TaskType, Vote, task_config_of
from quality.adaptive import overlap_decisions
from quality.models import ItemScore, ProjectScore, QualityConfig, ReviewDecision
from quality.services.scores import UPSERT_BATCH_SIZE

METHOD = "type_rule"  # ItemScore.method for consensus by the task type's rule
SUMMARY_MAX = 200  # ItemScore.label holds the consensus summary, cut to the column's size
State = ItemScore.State


def _answers(*, project: Project, excluded: set[int]) -> dict[int, list[Vote]]:
    """Live answers per item: not superseded, not by excluded workers; a worker's latest."""
    latest: dict[tuple[int, int], Vote] = {}
    rows = (
        Annotation.objects.filter(project_id=project.pk, superseded_at__isnull=True)
        .exclude(author_id__in=excluded)
        .order_by("id")
        .values_list("item_id", "author_id", "value")
    )
    for item_id, author_id, value in rows.iterator(chunk_size=UPSERT_BATCH_SIZE):
        latest[(item_id, author_id)] = Vote(worker_id=author_id, value=value)
    by_item: dict[int, list[Vote]] = defaultdict(list)
    for (item_id, _author), vote in latest.items():
        by_item[item_id].append(vote)
    return by_item


def _decisions(*, project: Project) -> dict[int, Mapping[str, Any]]:
    """Each reviewed item's latest expert decision."""
    decided: dict[int, Mapping[str, Any]] = {}
    for item_id, value in (
        ReviewDecision.objects.filter(project_id=project.pk)
        .order_by("id")
        .values_list("item_id", "value")
    ):
        decided[item_id] = value
    return decided


def typed_recompute(
    *,
    project: Project,
    config: QualityConfig,
    task_type: TaskType,
    excluded: set[int],
    now: datetime,
) -> ProjectScore:
    """Consensus, item states and agreement of a project whose type is not categorical."""
    from annotation.services import item_priorities_set, item_targets_raise

    task_config = task_config_of(project)
    answers = _answers(project=project, excluded=excluded)
    decided = _decisions(project=project)
    items = {
        row[0]: row
        for row in Item.objects.filter(project_id=project.pk).values_list(
            "id", "is_gold", "target", "priority"
        )
    }
    item_ids = sorted(item_id for item_id in answers.keys() | decided.keys() if item_id in items)
    values: list[Mapping[str, Any] | None] = []
    support = np.zeros(len(item_ids))
    counts = np.zeros(len(item_ids), dtype=np.int64)
    for index, item_id in enumerate(item_ids):
        votes = answers.get(item_id, [])
        counts[index] = len(votes)
        if item_id in decided:
            values.append(decided[item_id])
            support[index] = 1.0
            continue
        consensus = task_type.consensus(votes, config=task_config) if votes else None
        values.append(None if consensus is None else dict(consensus.value))
        support[index] = 0.0 if consensus is None else consensus.support

    is_gold = np.array([items[i][1] for i in item_ids], dtype=bool)
    target = np.array([items[i][2] for i in item_ids], dtype=np.int64)
    reviewed = np.array([i in decided for i in item_ids], dtype=bool)
    regular = ~is_gold & ~reviewed
    new_target, doubtful, review = overlap_decisions(
        confidence=np.where(regular, support, np.nan),
        annotation_count=counts,
        target=target,
        threshold=config.confidence_threshold,
        max_overlap=config.max_overlap,
        review_enabled=config.review_enabled,
    )
    raised = np.flatnonzero(new_target > target)
    if raised.size:
        item_targets_raise(
            project=project,
            targets={item_ids[i]: int(new_target[i]) for i in raised.tolist()},
        )
    unsure = support < config.confidence_threshold
    collecting = regular & (counts < new_target)
    waiting = collecting & unsure & ((new_target > project.overlap) | doubtful)
    states = np.full(len(item_ids), State.CONFIDENT.value, dtype=object)
    states[collecting] = State.OPEN.value
    states[waiting] = State.DOUBTFUL.value
    states[regular & ~collecting & unsure] = State.DOUBTFUL.value
    states[review] = State.REVIEW.value
    states[reviewed] = State.REVIEWED.value
    waiting_ids = [item_ids[i] for i in np.flatnonzero(waiting).tolist()]
    if set(waiting_ids) != {item_id for item_id, row in items.items() if row[3] > 0}:
        item_priorities_set(project=project, high=waiting_ids)

    _item_scores_write(
        project=project,
        task_type=task_type,
        item_ids=item_ids,
        values=values,
        support=support,
        counts=counts,
        states=states,
        now=now,
    )
    agreement = task_type.agreement(
        {item_id: answers[item_id] for item_id in item_ids if item_id in answers},
        config=task_config,
    )
    scored_answers = sum(len(votes) for votes in answers.values())
    score, _ = ProjectScore.objects.update_or_create(
        project=project,
        defaults={
            "fleiss_kappa": None,
            "krippendorff_alpha": None,
            "items_scored": len(item_ids),
            "annotations_scored": scored_answers,
            "details": {
                "full_at": now.isoformat(),
                "method": METHOD,
                "method_requested": METHOD,
                "method_reason": f"{task_type.name} answers use the type's consensus rule.",
                "type_agreement": _jsonable(agreement),
                "annotation_max_id": Annotation.objects.filter(project_id=project.pk).aggregate(
                    top=Max("id")
                )["top"]
                or 0,
            },
            "computed_at": now,
        },
    )
    return score


def _jsonable(figures: Mapping[str, Any]) -> dict[str, Any]:
    """Agreement figures rounded to 4 decimals (None kept), per-label mappings included."""

    def rounded(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(key): rounded(inner) for key, inner in value.items()}
        if value is None:
            return None
        number = float(value)
        return None if not np.isfinite(number) else round(number, 4)

    return {str(key): rounded(value) for key, value in figures.items()}


def _item_scores_write(
    *,
    project: Project,
    task_type: TaskType,
    item_ids: Sequence[int],
    values: Sequence[Mapping[str, Any] | None],
    support: np.ndarray,
    counts: np.ndarray,
    states: np.ndarray,
    now: datetime,
) -> None:
    """Upsert the changed ItemScore rows; drop the rows of items without answers any more."""
    stored = {
        row[0]: row[1:]
        for row in ItemScore.objects.filter(project_id=project.pk).values_list(
            "item_id", "value", "confidence", "annotation_count", "state", "method"
        )
    }
    changed: list[ItemScore] = []
    for index, item_id in enumerate(item_ids):
        confidence = round(float(support[index]), 4)
        fresh = (values[index], confidence, int(counts[index]), str(states[index]), METHOD)
        if stored.get(item_id) == fresh:
            continue
        summary = task_type.summary(values[index])[:SUMMARY_MAX]
        changed.append(
            ItemScore(
                item_id=item_id,
                project_id=project.pk,
                majority_label=summary,
                agreement=confidence,
                annotation_count=int(counts[index]),
                label=summary,
                confidence=confidence,
                posterior={},
                method=METHOD,
                state=str(states[index]),
                value=values[index],
                computed_at=now,
            )
        )
    ItemScore.objects.bulk_create(
        changed,
        batch_size=UPSERT_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["item"],
        update_fields=[
            "project",
            "majority_label",
            "agreement",
            "annotation_count",
            "label",
            "confidence",
            "posterior",
            "method",
            "state",
            "value",
            "computed_at",
        ],
    )
    gone = sorted(set(stored) - set(item_ids))
    for begin in range(0, len(gone), UPSERT_BATCH_SIZE):
        ItemScore.objects.filter(item_id__in=gone[begin : begin + UPSERT_BATCH_SIZE]).delete()
