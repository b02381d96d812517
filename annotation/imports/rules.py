"""What a row of an import must hold: the project's task type checks its data, its gold and
its predictions.

The type's `item_data_clean` checks an item's data and its `value_clean` a gold answer or a
prediction; their error keys ("data.text", "value.spans[2].end") become the file's column names
("text"), gold fields ("gold.spans[2].end") and prediction fields
("predictions[0].value.spans[2].end"; see `predicting`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError

from annotation.imports.parsing import (
    DECODER,
    IMAGE_KEYS,
    URL_PREFIXES,
    ImportRow,
    Issue,
    _has_image,
    _issue,
)
from annotation.imports.predicting import NOT_ON_GOLD, PredictionRules
from annotation.models import Project
from annotation.task_types import TaskConfig, TaskType, task_config_of, task_type_get


def _messages_of(exc: ValidationError) -> Iterator[tuple[str | None, str]]:
    if hasattr(exc, "error_dict"):
        for key, errors in exc.message_dict.items():
            for message in errors:
                yield key, message
    else:
        for message in exc.messages:
            yield None, message


def _data_field(key: str | None, media: tuple[str, ...]) -> str | None:
    """A type's error key ("data.text", "data") as the file's column or key name."""
    if key is None or key in ("data", "__all__"):
        return "text" if "text" in media else None
    return key.removeprefix("data.")


def _gold_field(key: str | None) -> str:
    """A type's answer error key ("value.spans[2].end", "label") under "gold"."""
    if key is None or key in ("value", "__all__"):
        return "gold"
    if key.startswith(("value.", "value[")):
        return "gold" + key.removeprefix("value")
    return f"gold.{key}"


class RowRules:
    """What a row of an import into `project` must hold, per its task type."""

    def __init__(self, project: Project) -> None:
        self.project_id: int = project.pk
        self.task_type: TaskType = task_type_get(project.task_type)
        self.config: TaskConfig = task_config_of(project)
        self.labels = frozenset(project.label_values)
        # Single label keeps its plain gold: a label value, not an answer object.
        self.gold_is_label = self.task_type.plain_gold
        self.media: tuple[str, ...] = tuple(self.task_type.media)
        self.image_capable = "image" in self.media
        self.columns = self.task_type.item_columns(self.config)
        self._item_data_clean = self.task_type.item_data_clean
        self.predictions = PredictionRules(self.task_type, self.config)

    def data_issues(self, data: dict[str, Any], line: int) -> tuple[dict | None, list[Issue]]:
        """The type's cleaned item data, or the row's issues."""
        try:
            cleaned = self._item_data_clean(data, config=self.config)
        except ValidationError as exc:
            return None, [
                _issue(line, _data_field(key, self.media), message)
                for key, message in _messages_of(exc)
            ]
        if self.image_capable:
            for key in IMAGE_KEYS:
                problem = self._image_ref_issue(cleaned.get(key), key, line)
                if problem:
                    return None, [problem]
        return cleaned, []

    def _image_ref_issue(self, ref: Any, key: str, line: int) -> Issue | None:
        """Files list images by URL; a storage path must be one of this project's images."""
        if not isinstance(ref, str) or ref.startswith(URL_PREFIXES):
            return None
        own = f"items/{self.project_id}/"
        if ref.startswith(own) and ".." not in ref and "\\" not in ref:
            return None
        return _issue(line, key, f"'{key}' must be an http(s) URL; upload image files as a .zip.")

    def gold_clean(
        self, value: Any, data: dict[str, Any], line: int, *, from_text: bool
    ) -> tuple[dict | None, list[Issue]]:
        """The gold answer in stored form (None when the row has none), or its issues.

        `from_text`: the value is a CSV cell, holding the answer object as JSON text.
        """
        if value is None or (isinstance(value, str) and not value.strip()):
            return None, []
        if self.gold_is_label:
            if isinstance(value, str) and value.strip() in self.labels:
                return {"label": value.strip()}, []
            allowed = ", ".join(sorted(self.labels))
            message = f"Unknown gold label {value!r}; use one of: {allowed}."
            return None, [_issue(line, "gold", message)]
        if from_text and isinstance(value, str):
            try:
                value = DECODER.decode(value)
            except (ValueError, RecursionError):
                message = 'Gold is an answer object written as JSON, e.g. {"labels": [...]}.'
                return None, [_issue(line, "gold", message)]
        if not isinstance(value, dict):
            message = "Gold is an answer object in this task type's stored form."
            return None, [_issue(line, "gold", message)]
        try:
            cleaned = self.task_type.value_clean(value, config=self.config, item_data=data)
        except ValidationError as exc:
            return None, [_issue(line, _gold_field(key), msg) for key, msg in _messages_of(exc)]
        return cleaned, []

    def row(
        self,
        line: int,
        data: dict[str, Any],
        gold: Any,
        *,
        gold_from_text: bool = False,
        data_json: str | None = None,
        predictions: Any = None,
        prediction_cells: dict[str, str] | None = None,
    ) -> ImportRow | list[Issue]:
        """One row checked: its ImportRow, or its issues (data, then gold, then predictions).

        `predictions`: a JSONL row's list; `prediction_cells`: a CSV row's prediction columns.
        """
        cleaned, problems = self.data_issues(data, line)
        gold_value, gold_problems = None, []
        if gold is not None:
            gold_value, gold_problems = self.gold_clean(
                gold, cleaned if cleaned is not None else data, line, from_text=gold_from_text
            )
        found, prediction_problems = self._predictions(
            cleaned if cleaned is not None else data,
            line,
            predictions,
            prediction_cells,
            has_gold=gold_value is not None or bool(gold_problems),
        )
        if problems or gold_problems or prediction_problems or cleaned is None:
            return problems + gold_problems + prediction_problems
        if data_json is not None and cleaned is not data and cleaned != data:
            data_json = None  # the type normalised the data: store its form
        text = cleaned.get("text")
        if not isinstance(text, str) or (self.image_capable and _has_image(cleaned)):
            text = None  # the key is the data's canonical form (see data_digest)
        return ImportRow(
            line=line,
            text=text,
            data=cleaned,
            gold=gold_value,
            data_json=data_json,
            predictions=found,
        )

    def _predictions(
        self,
        data: dict[str, Any],
        line: int,
        predictions: Any,
        cells: dict[str, str] | None,
        *,
        has_gold: bool,
    ) -> tuple[tuple, list[Issue]]:
        """The row's predictions, cleaned, or their issues; refused on gold rows."""
        if cells is not None:
            if has_gold:
                return (), [_issue(line, "prediction", NOT_ON_GOLD)]
            return self.predictions.from_cells(cells, data, line)
        if predictions is None or predictions == []:
            return (), []
        if has_gold:
            return (), [_issue(line, "predictions", NOT_ON_GOLD)]
        return self.predictions.from_json(predictions, data, line)
