"""Running a project's active labeling rules over all its items: stats and pre-labels.

Items are streamed in chunks. Each rule answers for each item (a label, spans, or abstain); a
search that runs past ITEM_SECONDS is a timeout (counted in `stats.timeouts`, the rule abstains
on that item); a rule whose searches take more than RULE_SECONDS in all, or every rule once
their searches together take RUN_SECONDS, stops there (abstains on the rest, `stats.stopped`).
Nothing an owner writes can hang a worker.

Stats of each rule (regular items only, except the gold accuracy):
- coverage: the share of regular items it labels (`covered` of `items`);
- overlaps: the share of its covered items that another rule also labels;
- conflicts: the share of its covered items where another rule gives a different answer
  (another label; for span rules, a span of another label sharing a character with one of its
  spans; never for multi-label projects, where labels add up);
- accuracy_gold {value, n}: on the gold items it covers, the share where it agrees with the gold
  answer (the gold label, a label among the gold labels for multi-label; for span rules, its
  spans equal the gold spans of its label);
- accuracy_consensus {value, n}: the same against confident (or expert-decided) consensus.

The combined pre-label of a regular item: the majority label of the rules that fire (a tie
abstains), scored by the share of firing rules that agree; for multi-label every label a rule
emits; for spans the union of the rules' spans (when the project forbids overlaps, longer spans
win, then earlier ones). Written as predictions of source "rule", model "rules", version a hash
of the active rules' definitions. Gold items never get one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import regex
from django.db import transaction
from django.utils import timezone

from annotation.models import Item, Prediction, Project
from annotation.predictions import predictions_replace
from annotation.task_types import TaskType, task_config_of, task_type_get
from annotation.task_types.spans import spans_options
from quality.models import ItemScore, LabelingRule
from quality.rules.kinds import Matcher, matcher_build

ITEM_SECONDS = 0.05  # one search of one rule on one item
RULE_SECONDS = 30.0  # one rule's searches over the whole run
RUN_SECONDS = 150.0  # every rule's searches together (below the Celery soft time limit)
CHUNK = 5000
MODEL_NAME = "rules"
SKIPPED = "Not run: not a rule for this task type, or its settings no longer compile."
TRUSTED_STATES = (ItemScore.State.CONFIDENT, ItemScore.State.REVIEWED)


@dataclass
class _Tally:
    """One rule's counters during a run."""

    covered: int = 0
    overlaps: int = 0
    conflicts: int = 0
    gold_n: int = 0
    gold_correct: int = 0
    consensus_n: int = 0
    consensus_correct: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    stopped: bool = False

    def stats(self, items: int) -> dict[str, Any]:
        def share(part: int, whole: int) -> float | None:
            return part / whole if whole else None

        return {
            "coverage": share(self.covered, items) or 0.0,
            "covered": self.covered,
            "items": items,
            "overlaps": share(self.overlaps, self.covered),
            "conflicts": share(self.conflicts, self.covered),
            "accuracy_gold": {"value": share(self.gold_correct, self.gold_n), "n": self.gold_n},
            "accuracy_consensus": {
                "value": share(self.consensus_correct, self.consensus_n),
                "n": self.consensus_n,
            },
            "timeouts": self.timeouts,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Budget:
    """Seconds spent searching by every rule of the run."""

    seconds: float = 0.0


@dataclass
class _Compiled:
    rule: LabelingRule
    matcher: Matcher
    budget: _Budget
    tally: _Tally = field(default_factory=_Tally)

    def answer(self, data: Mapping[str, Any]) -> Any:
        """The rule's answer for one item: True/spans when it fires, None when it abstains."""
        tally = self.tally
        if tally.stopped:
            return None
        started = time.perf_counter()
        try:
            result = self.matcher.search(data, ITEM_SECONDS)
        except TimeoutError:
            tally.timeouts += 1
            result = None
        spent = time.perf_counter() - started
        tally.seconds += spent
        self.budget.seconds += spent
        if tally.seconds > RULE_SECONDS or self.budget.seconds > RUN_SECONDS:
            tally.stopped = True
        return result or None


def rules_version(rules: Sequence[LabelingRule]) -> str:
    """A hash of the rules' definitions (kind, config, label), in id order."""
    body = [[r.pk, r.kind, r.config, r.label] for r in sorted(rules, key=lambda r: r.pk)]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _items(project: Project) -> Iterator[tuple[int, bool, Any, dict]]:
    rows = Item.objects.filter(project_id=project.pk).order_by("pk")
    yield from rows.values_list("pk", "is_gold", "gold", "data").iterator(chunk_size=CHUNK)


def _trusted(project: Project) -> dict[int, Any]:
    """Item id -> the confident consensus: its label (categorical) or value (others)."""
    rows = ItemScore.objects.filter(project_id=project.pk, state__in=TRUSTED_STATES)
    return {
        item_id: (value if value is not None else label)
        for item_id, label, value in rows.values_list("item_id", "label", "value")
    }


class _Judge:
    """How answers of a project's type compare (labels, multi-label, spans)."""

    def __init__(self, project: Project) -> None:
        self.task_type: TaskType = task_type_get(project.task_type)
        self.config = task_config_of(project)
        self.spans = project.task_type == "spans"
        self.multi = not self.spans and not self.task_type.category_key
        self.allow_overlap = self.spans and spans_options(self.config)["allow_overlap"]

    def agrees(self, rule: LabelingRule, answer: Any, truth: Any) -> bool:
        """Whether a firing rule's answer agrees with a gold value or a trusted consensus."""
        if self.spans:
            if not isinstance(truth, Mapping):
                return False
            expected = {
                (s["start"], s["end"]) for s in truth.get("spans") or () if s["label"] == rule.label
            }
            return expected == set(answer)
        if isinstance(truth, Mapping):
            if self.multi:
                return rule.label in (truth.get("labels") or ())
            truth = truth.get(self.task_type.category_key)
        return truth is not None and str(truth) == rule.label

    def combined(self, fired: Sequence[tuple[_Compiled, Any]]) -> tuple[dict, float | None] | None:
        """The pre-label of an item from the rules that fired, with its score; None: abstain."""
        if self.spans:
            spans = {(s, e, c.rule.label) for c, answer in fired for s, e in answer}
            return {"spans": self._resolved(spans), "relations": []}, None
        if self.multi:
            chosen = {c.rule.label for c, _answer in fired}
            return {"labels": [v for v in self.config.label_values if v in chosen]}, None
        counts = Counter(c.rule.label for c, _answer in fired).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            return None
        label, count = counts[0]
        return self.task_type.value_of_category(label), count / len(fired)

    def _resolved(self, spans: set[tuple[int, int, str]]) -> list[dict]:
        ordered = sorted(spans)
        if not self.allow_overlap:
            kept: list[tuple[int, int, str]] = []
            for span in sorted(ordered, key=lambda s: (s[0] - s[1], s[0], s[2])):
                if all(span[1] <= k[0] or k[1] <= span[0] for k in kept):
                    kept.append(span)
            ordered = sorted(kept)
        return [{"start": s, "end": e, "label": label} for s, e, label in ordered]

    def conflicting(self, mine: _Compiled, answer: Any, other: _Compiled, theirs: Any) -> bool:
        if self.multi or other.rule.label == mine.rule.label:
            return False
        if not self.spans:
            return True
        return any(s1 < e2 and s2 < e1 for s1, e1 in answer for s2, e2 in theirs)


def _tally_item(judge: _Judge, fired: Sequence[tuple[_Compiled, Any]], truth: Any) -> None:
    for compiled, answer in fired:
        tally = compiled.tally
        tally.covered += 1
        others = [(c, a) for c, a in fired if c is not compiled]
        tally.overlaps += bool(others)
        tally.conflicts += any(judge.conflicting(compiled, answer, c, a) for c, a in others)
        if truth is not None:
            tally.consensus_n += 1
            tally.consensus_correct += judge.agrees(compiled.rule, answer, truth)


def _progress(rules: Sequence[LabelingRule], state: str, done: int) -> None:
    for rule in rules:
        run = {**(rule.stats or {}).get("run", {}), "state": state, "done": done}
        LabelingRule.objects.filter(pk=rule.pk).update(stats={**(rule.stats or {}), "run": run})


def rules_run(*, project: Project) -> int:
    """Run the project's active rules over all its items; write each rule's stats and ran_at
    and the combined pre-labels (replacing the earlier rule predictions). Returns how many
    pre-labels were written. Idempotent."""
    rules = list(LabelingRule.objects.filter(project=project, active=True).order_by("pk"))
    judge = _Judge(project)
    span_field = spans_options(judge.config)["field"] if judge.spans else "text"
    budget, compiled = _Budget(), list[_Compiled]()
    for rule in rules:
        if (rule.kind == LabelingRule.Kind.SPAN_PATTERN) != judge.spans:
            continue
        try:
            matcher = matcher_build(rule.kind, rule.config, span_field=span_field)
        except (regex.error, KeyError, TypeError):
            continue  # a broken stored rule: skipped, and its stats say so
        compiled.append(_Compiled(rule, matcher, budget))
    trusted = _trusted(project) if compiled else {}
    rows: list[tuple[int, Any, float | None]] = []
    regular = 0
    for done, (item_id, is_gold, gold, data) in enumerate(_items(project) if compiled else ()):
        if done and done % (CHUNK * 4) == 0:
            _progress(rules, "running", done)
        fired = [
            (c, a) for c in compiled if (a := c.answer(data if isinstance(data, dict) else {}))
        ]
        if is_gold:
            for c, answer in fired:
                c.tally.gold_n += 1
                c.tally.gold_correct += judge.agrees(c.rule, answer, gold)
            continue
        regular += 1
        _tally_item(judge, fired, trusted.get(item_id))
        combined = judge.combined(fired) if fired else None
        if combined is not None:
            rows.append((item_id, combined[0], combined[1]))
    return _results_write(project, rules, compiled, rows, regular)


@transaction.atomic
def _results_write(
    project: Project,
    rules: Sequence[LabelingRule],
    compiled: Sequence[_Compiled],
    rows: list[tuple[int, Any, float | None]],
    regular: int,
) -> int:
    now = timezone.now()
    tallies = {c.rule.pk: c.tally for c in compiled}
    for rule in rules:
        tally = tallies.get(rule.pk)
        stats = tally.stats(regular) if tally else {"skipped": SKIPPED}
        stats["run"] = {"state": "done", "done": regular, "finished_at": now.isoformat()}
        rule.stats, rule.ran_at = stats, now
    LabelingRule.objects.bulk_update(rules, ["stats", "ran_at"])
    return predictions_replace(
        project=project,
        source=Prediction.Source.RULE,
        rows=rows,
        model_name=MODEL_NAME,
        model_version=rules_version(rules),
    )
