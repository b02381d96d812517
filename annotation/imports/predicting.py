"""Pre-labels (predictions) carried by import rows: checked in pass 1, stored in pass 2.

A JSONL row holds a list under "predictions": [{"value", "score"?, "model_name"?,
"model_version"?}]; a CSV row holds one in the columns `prediction` (the answer as JSON, or a
bare label for single label), `prediction_score`, `prediction_model` and
`prediction_model_version`. Values are checked by the task type like gold answers (with the
row's item data); errors name the row's field ("predictions[0].value.spans[1].end",
"prediction_score"). Gold rows cannot carry one. In pass 2 each row's predictions go on its
item with source "import" (on the existing item when the row was a duplicate), replacing that
item's earlier imported predictions of the same model name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.exceptions import ValidationError

from annotation.imports.parsing import DECODER, Issue, _issue
from annotation.models import Item, Prediction, Project
from annotation.predictions import score_clean
from annotation.task_types import TaskConfig, TaskType

MAX_PER_ROW = 20
NOT_ON_GOLD = "A gold item cannot carry a prediction."
KEYS = ("value", "score", "model_name", "model_version")
NAME_LENGTHS = {"model_name": 200, "model_version": 100}
# Where a CSV row's prediction fields are reported: its column names.
CSV_FIELDS = {
    "value": "prediction",
    "score": "prediction_score",
    "model_name": "prediction_model",
    "model_version": "prediction_model_version",
}


class RowRefusedError(Exception):
    """Pass 2 found rows whose predictions cannot be stored; nothing of the import is kept."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(f"{len(issues)} rows refused")
        self.issues = issues


def _messages(exc: ValidationError) -> Iterator[tuple[str | None, str]]:
    if hasattr(exc, "error_dict"):
        for key, errors in exc.message_dict.items():
            for message in errors:
                yield key, message
    else:
        for message in exc.messages:
            yield None, message


class PredictionRules:
    """What a row's predictions must hold, for one project's task type."""

    def __init__(self, task_type: TaskType, config: TaskConfig) -> None:
        self.task_type = task_type
        self.config = config
        self.plain = task_type.plain_gold  # single label: a bare label is an answer

    def from_json(self, raw: Any, data: dict[str, Any], line: int) -> tuple[tuple, list[Issue]]:
        """A JSONL row's "predictions" list, cleaned, or its issues."""
        if raw is None:
            return (), []
        if not isinstance(raw, list):
            return (), [_issue(line, "predictions", "Predictions are a list of objects.")]
        if len(raw) > MAX_PER_ROW:
            message = f"At most {MAX_PER_ROW} predictions per row."
            return (), [_issue(line, "predictions", message)]
        cleaned: list[dict[str, Any]] = []
        problems: list[Issue] = []
        for index, entry in enumerate(raw):
            where = f"predictions[{index}]"
            if not isinstance(entry, dict):
                problems.append(_issue(line, where, "A prediction is an object with a value."))
                continue
            unknown = sorted(set(entry) - set(KEYS))
            if unknown:
                message = f"Unknown key {unknown[0]!r}; a prediction has {', '.join(KEYS)}."
                problems.append(_issue(line, f"{where}.{unknown[0]}", message))
                continue
            if "value" not in entry:
                problems.append(_issue(line, f"{where}.value", "A prediction needs a value."))
                continue
            fields = {key: f"{where}.{key}" for key in KEYS}
            one, issues = self._one(entry, data, line, fields)
            problems += issues
            if one is not None:
                cleaned.append(one)
        problems += self._repeats(cleaned, line, "predictions") if not problems else []
        return (tuple(cleaned), []) if not problems else ((), problems)

    def from_cells(
        self, cells: dict[str, str], data: dict[str, Any], line: int
    ) -> tuple[tuple, list[Issue]]:
        """A CSV row's prediction columns, cleaned (one prediction), or their issues."""
        text = cells.get("prediction", "").strip()
        if not text:
            message = "The row has prediction details but no prediction."
            return (), [_issue(line, "prediction", message)]
        value: Any = text
        if not self.plain or text.startswith("{"):
            try:
                value = DECODER.decode(text)
            except (ValueError, RecursionError):
                message = (
                    'A prediction is an answer object written as JSON, e.g. {"labels": [...]}.'
                )
                return (), [_issue(line, "prediction", message)]
        score_text = cells.get("prediction_score", "").strip()
        score: Any = None
        if score_text:
            try:
                score = float(score_text)
            except ValueError:
                score = score_text  # refused below, with the usual message
        entry = {
            "value": value,
            "score": score,
            "model_name": cells.get("prediction_model", "").strip(),
            "model_version": cells.get("prediction_model_version", "").strip(),
        }
        one, problems = self._one(entry, data, line, CSV_FIELDS)
        return ((one,), []) if one is not None else ((), problems)

    def _one(
        self, entry: dict[str, Any], data: dict[str, Any], line: int, fields: dict[str, str]
    ) -> tuple[dict[str, Any] | None, list[Issue]]:
        problems: list[Issue] = []
        value = entry["value"]
        cleaned_value = None
        if not self.plain and not isinstance(value, dict):
            message = "A prediction's value is an answer object in this task type's stored form."
            problems.append(_issue(line, fields["value"], message))
        else:
            try:
                cleaned_value = self.task_type.value_clean(
                    value, config=self.config, item_data=data
                )
            except ValidationError as exc:
                problems += [
                    _issue(line, self._value_field(fields["value"], key), message)
                    for key, message in _messages(exc)
                ]
        try:
            score = score_clean(entry.get("score"))
        except ValidationError:
            score = None
            problems.append(_issue(line, fields["score"], "A score is a number between 0 and 1."))
        names: dict[str, str] = {}
        for key, limit in NAME_LENGTHS.items():
            name = entry.get(key, "")
            name = "" if name is None else name
            if not isinstance(name, str) or len(name) > limit:
                message = f"A text of at most {limit} characters."
                problems.append(_issue(line, fields[key], message))
            else:
                names[key] = name.strip()
        if problems:
            return None, problems
        return {"value": cleaned_value, "score": score, **names}, []

    def _value_field(self, base: str, key: str | None) -> str:
        """A type's answer error key ("value.spans[1].end", "label") under `base`."""
        if key is None or key in ("value", "__all__") or self.plain:
            return base
        if key.startswith(("value.", "value[")):
            return base + key.removeprefix("value")
        return f"{base}.{key}"

    @staticmethod
    def _repeats(cleaned: list[dict[str, Any]], line: int, where: str) -> list[Issue]:
        seen: set[str] = set()
        for index, one in enumerate(cleaned):
            if one["model_name"] in seen:
                message = "Two predictions of the same model name: an item keeps one per model."
                return [_issue(line, f"{where}[{index}].model_name", message)]
            seen.add(one["model_name"])
        return []


# --- Pass 2 ----------------------------------------------------------------------------------


def predictions_store(
    project: Project, rows: Iterable[tuple[int, bytes, tuple[dict[str, Any], ...]]]
) -> list[Issue]:
    """Store the predictions of a batch of rows ((line, duplicate key, predictions)) on the
    items with those keys; return the issues of rows whose item turned out to be gold.

    Runs after the batch's items are written, in the import's transaction. An item's earlier
    imported predictions of the same model name (any version) are replaced; within the file
    the last row wins.
    """
    rows = list(rows)
    if not rows:
        return []
    hashes = {digest.hex() for _line, digest, _predictions in rows}
    items = {
        content_hash: (pk, is_gold)
        for content_hash, pk, is_gold in Item.objects.filter(
            project=project, content_hash__in=hashes
        ).values_list("content_hash", "pk", "is_gold")
    }
    problems: list[Issue] = []
    chosen: dict[tuple[int, str], Prediction] = {}
    for line, digest, predictions in rows:
        item_id, is_gold = items[digest.hex()]
        if is_gold:
            message = f"{NOT_ON_GOLD} This row repeats gold item {item_id}."
            problems.append(_issue(line, "predictions", message))
            continue
        for one in predictions:
            chosen[(item_id, one["model_name"])] = Prediction(
                project=project, item_id=item_id, source=Prediction.Source.IMPORT, **one
            )
    if problems:
        return problems
    by_model: dict[str, set[int]] = defaultdict(set)
    for item_id, model_name in chosen:
        by_model[model_name].add(item_id)
    for model_name, item_ids in by_model.items():
        Prediction.objects.filter(
            source=Prediction.Source.IMPORT, model_name=model_name, item_id__in=item_ids
        ).delete()
    Prediction.objects.bulk_create(chosen.values(), batch_size=2_000)
    return []
