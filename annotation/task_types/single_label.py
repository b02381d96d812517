"""Single label: one label from the set per item (text or image).

Stored answer: {"label": str}. Agreement: "alpha_nominal" and "fleiss_kappa"; consensus: weighted
plurality (a tie for first place has none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from annotation.task_types._common import (
    category_codes,
    item_media_clean,
    votes_indexed,
    weighted_plurality,
)
from annotation.task_types._reliability import fleiss_kappa, krippendorff_alpha
from annotation.task_types.base import Consensus, TaskConfig, TaskType, Vote


class SingleLabel(TaskType):
    key = "single_label"
    name = "Single label"
    description = "Pick one label per item (text or image)."
    media = ("text", "image")
    categorical = True
    category_key = "label"
    plain_gold = True
    widget = "annotation/widgets/single_label.html"

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        return item_media_clean(data, media=self.media)

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        label = value.get("label") if isinstance(value, dict) else value
        if not isinstance(label, str) or label not in config.label_values:
            allowed = ", ".join(config.label_values)
            raise ValidationError({"label": [f"Unknown label {label!r}; use one of: {allowed}."]})
        return {"label": label}

    def categories(self, value: Mapping[str, Any], *, config: TaskConfig) -> list[str]:
        return [value["label"]]

    def summary(self, value: Mapping[str, Any] | None) -> str:
        return "" if value is None else str(value.get("label", ""))

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """Krippendorff's alpha (nominal) and Fleiss' kappa over items with two or more answers.

        Fleiss' kappa allows unequal raters per item: the per-item agreements are averaged.
        """
        items, workers, votes = votes_indexed(answers)
        codes = category_codes([vote.value["label"] for vote in votes], order=config.label_values)
        return {
            "alpha_nominal": krippendorff_alpha(items, workers, codes, level="nominal"),
            "fleiss_kappa": fleiss_kappa(items, workers, codes),
        }

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """Weighted plurality; a tie has no consensus."""
        winner = weighted_plurality([(vote.value["label"], vote.weight) for vote in votes])
        if winner is None:
            return None
        label, support = winner
        return Consensus(value={"label": label}, support=support)


TASK_TYPE = SingleLabel()
