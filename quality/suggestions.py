"""Do suggestions (pre-labels) help or bias? Measured on demand from the stored answers.

- Each source's accuracy (imported / API, rules, built-in model) against gold and against the
  confident consensus (ItemScore state confident, or decided by an expert).
- Annotator speed: median time on task of answers made with a suggestion shown and without
  (regular items only, so gold questions do not weigh on either side).
- The share of shown suggestions accepted unchanged.
- Anchoring: accuracy of answers that accepted a suggestion, that changed it, and that were made
  unaided, against gold and against the confident consensus, each with its n and 95% interval.

Gold items never show a suggestion (annotation.predictions), so suggested answers and
predictions can rarely be checked against gold; their gold n says so, and the consensus figures
carry the comparison (read them knowing that consensus is built from these same answers).

An answer is correct when it picks the same categories as the reference (categorical types) or
is the same stored answer (spans, boxes, free text: exact match).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q

from annotation.models import Annotation, Prediction, Project
from annotation.task_types import task_config_of, task_type_get
from annotation.task_types.base import TaskConfig, TaskType
from quality.gold import wilson_interval
from quality.models import ItemScore, LabelingRule, ModelVersion

REFERENCE_STATES = (ItemScore.State.CONFIDENT, ItemScore.State.REVIEWED)
SMALL_N = 30  # below this many answers a share is flagged as uncertain
SCORE = "item__score__"


@dataclass(frozen=True)
class Accuracy:
    """`correct` of `n` compared answers, with the share and its 95% Wilson interval."""

    n: int
    correct: int

    @property
    def share(self) -> float | None:
        return self.correct / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.n:
            return None
        low, high = wilson_interval(self.correct, self.n)
        return float(low), float(high)

    @property
    def is_small(self) -> bool:
        return 0 < self.n < SMALL_N


@dataclass(frozen=True)
class SourceAccuracy:
    """One source of predictions: how many items it covers, and how often it is right."""

    source: str
    label: str
    predictions: int
    gold: Accuracy
    consensus: Accuracy


@dataclass(frozen=True)
class AnswerGroup:
    """Answers made one way (accepted a suggestion, changed it, or unaided)."""

    key: str
    label: str
    answers: int
    gold: Accuracy
    consensus: Accuracy


@dataclass(frozen=True)
class SuggestionMetrics:
    """What the dashboard's Suggestions section shows for one project."""

    sources: list[SourceAccuracy]
    shown: int
    accepted: int
    median_ms_shown: float | None
    median_ms_unaided: float | None
    answers_shown_timed: int
    answers_unaided_timed: int
    groups: list[AnswerGroup]
    # Checked where predictions are never stored (gold items): the labeling rules on the gold
    # items they cover (their last run, summed over active rules), and the built-in model on
    # its held-out vetted items.
    rules_gold: Accuracy = Accuracy(0, 0)
    model_version: int | None = None
    model_validation: Accuracy = Accuracy(0, 0)

    @property
    def accepted_share(self) -> float | None:
        return self.accepted / self.shown if self.shown else None

    @property
    def median_seconds_shown(self) -> float | None:
        return None if self.median_ms_shown is None else self.median_ms_shown / 1000

    @property
    def median_seconds_unaided(self) -> float | None:
        return None if self.median_ms_unaided is None else self.median_ms_unaided / 1000

    @property
    def has_data(self) -> bool:
        return bool(self.sources or self.shown)


def _gold_reference(task_type: TaskType, gold: Any) -> Mapping[str, Any] | None:
    """A gold answer in stored form (a bare label is single label's plain gold)."""
    if isinstance(gold, dict):
        return gold
    if gold is not None and task_type.category_key:
        return task_type.value_of_category(str(gold))
    return None


def _consensus_reference(
    task_type: TaskType, state: str | None, label: str | None, value: Any
) -> Mapping[str, Any] | None:
    """The item's consensus in stored form when it is confident (or decided by an expert)."""
    if state not in REFERENCE_STATES:
        return None
    if isinstance(value, dict):
        return value
    if label and task_type.category_key:
        return task_type.value_of_category(label)
    return None


def _same(
    task_type: TaskType, config: TaskConfig, answer: Any, reference: Mapping[str, Any]
) -> bool:
    """Whether `answer` says what `reference` says (same categories, or the same answer)."""
    if not isinstance(answer, dict):
        return False
    if task_type.categorical:
        try:
            mine = {str(c) for c in task_type.categories(answer, config=config)}
            theirs = {str(c) for c in task_type.categories(reference, config=config)}
        except (KeyError, TypeError, ValueError):
            return False
        return mine == theirs
    return answer == dict(reference)


class _Tally:
    """Running counts of compared answers against gold and consensus."""

    def __init__(self) -> None:
        self.gold = [0, 0]  # n, correct
        self.consensus = [0, 0]

    def add(self, gold: bool | None, consensus: bool | None) -> None:
        for pair, outcome in ((self.gold, gold), (self.consensus, consensus)):
            if outcome is not None:
                pair[0] += 1
                pair[1] += int(outcome)

    def accuracy(self) -> tuple[Accuracy, Accuracy]:
        return Accuracy(*self.gold), Accuracy(*self.consensus)


def _compare(
    task_type: TaskType, config: TaskConfig, value: Any, row: tuple[Any, ...]
) -> tuple[bool | None, bool | None]:
    """(correct against gold, correct against consensus); None where the item has neither."""
    gold, state, label, consensus = row
    gold_ref = _gold_reference(task_type, gold)
    consensus_ref = _consensus_reference(task_type, state, label, consensus)
    return (
        None if gold_ref is None else _same(task_type, config, value, gold_ref),
        None if consensus_ref is None else _same(task_type, config, value, consensus_ref),
    )


def _has_reference() -> Q:
    return Q(item__gold__isnull=False) | Q(**{f"{SCORE}state__in": REFERENCE_STATES})


REFERENCE_COLUMNS = ("item__gold", f"{SCORE}state", f"{SCORE}label", f"{SCORE}value")


def _source_accuracy(
    project: Project, task_type: TaskType, config: TaskConfig
) -> list[SourceAccuracy]:
    """Per source: items covered and accuracy (two queries)."""
    counts = dict(
        Prediction.objects.filter(project_id=project.pk)
        .values_list("source")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("source", "n")
    )
    tallies = {source: _Tally() for source in counts}
    rows = (
        Prediction.objects.filter(_has_reference(), project_id=project.pk)
        .values_list("source", "value", *REFERENCE_COLUMNS)
        .iterator(chunk_size=2000)
    )
    for source, value, *reference in rows:
        tallies[source].add(*_compare(task_type, config, value, tuple(reference)))
    labels = dict(Prediction.Source.choices)
    return [
        SourceAccuracy(source, labels.get(source, source), counts[source], *tally.accuracy())
        for source, tally in sorted(tallies.items())
    ]


def _median(values: Iterable[int]) -> float | None:
    values = list(values)
    return float(statistics.median(values)) if values else None


GROUPS = (
    ("accepted", "Accepted a suggestion unchanged", True),
    ("changed", "Changed the suggestion", False),
    ("unaided", "Unaided (no suggestion shown)", None),
)


def _rules_gold(project: Project) -> Accuracy:
    """The active rules' agreement with gold on the gold items each covers (last run)."""
    n = correct = 0
    for stats in LabelingRule.objects.filter(project_id=project.pk, active=True).values_list(
        "stats", flat=True
    ):
        entry = (stats or {}).get("accuracy_gold") or {}
        count, share = int(entry.get("n") or 0), entry.get("value")
        if count and share is not None:
            n += count
            correct += round(float(share) * count)
    return Accuracy(n, correct)


def _model_validation(project: Project) -> tuple[int | None, Accuracy]:
    """The newest ready built-in model version and its accuracy on held-out vetted items."""
    latest = (
        ModelVersion.objects.filter(project_id=project.pk, status=ModelVersion.Status.READY)
        .order_by("-version")
        .values_list("version", "validation_count", "validation_accuracy")
        .first()
    )
    if latest is None or not latest[1] or latest[2] is None:
        return None, Accuracy(0, 0)
    version, n, share = latest
    return version, Accuracy(n, round(share * n))


def suggestion_metrics_get(*, project: Project) -> SuggestionMetrics:
    """How the project's suggestions fare and what they do to answers (seven queries)."""
    task_type = task_type_get(project.task_type)
    config = task_config_of(project)
    live = Annotation.objects.filter(project_id=project.pk, superseded_at__isnull=True)
    totals = live.aggregate(
        accepted=Count("id", filter=Q(suggestion_accepted=True)),
        changed=Count("id", filter=Q(suggestion_accepted=False)),
        unaided=Count("id", filter=Q(suggestion_accepted__isnull=True)),
    )
    shown_ms: list[int] = []
    unaided_ms: list[int] = []
    timed = live.filter(item__is_gold=False, duration_ms__gt=0)
    for duration, accepted in timed.values_list("duration_ms", "suggestion_accepted").iterator(
        chunk_size=5000
    ):
        (unaided_ms if accepted is None else shown_ms).append(duration)
    tallies = {key: _Tally() for key, _label, _accepted in GROUPS}
    by_outcome = {accepted: key for key, _label, accepted in GROUPS}
    for accepted, value, *reference in (
        live.filter(_has_reference())
        .values_list("suggestion_accepted", "value", *REFERENCE_COLUMNS)
        .iterator(chunk_size=2000)
    ):
        tallies[by_outcome[accepted]].add(*_compare(task_type, config, value, tuple(reference)))
    rules_gold, (model_version, model_validation) = _rules_gold(project), _model_validation(project)
    return SuggestionMetrics(
        rules_gold=rules_gold,
        model_version=model_version,
        model_validation=model_validation,
        sources=_source_accuracy(project, task_type, config),
        shown=totals["accepted"] + totals["changed"],
        accepted=totals["accepted"],
        median_ms_shown=_median(shown_ms),
        median_ms_unaided=_median(unaided_ms),
        answers_shown_timed=len(shown_ms),
        answers_unaided_timed=len(unaided_ms),
        groups=[
            AnswerGroup(key, label, totals[key], *tallies[key].accuracy())
            for key, label, _accepted in GROUPS
        ],
    )
