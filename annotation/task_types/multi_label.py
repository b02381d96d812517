"""Multi-label: any number of labels from the set per item (text or image).

Stored answer: {"labels": [str, ...]}, unique, in label-set order. Option `allow_none` (default
false) says whether picking no label is an answer. Agreement: "per_label_alpha" (nominal alpha of
each label as present/absent) and "mean_jaccard"; consensus: per-label weighted majority.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError

from annotation.task_types._common import (
    answer_object,
    item_media_clean,
    option_bool,
    options_with_defaults,
    pairs_of,
    vote_weight,
    votes_indexed,
)
from annotation.task_types._reliability import krippendorff_alpha
from annotation.task_types.base import Consensus, OptionSpec, TaskConfig, TaskType, Vote

DEFAULTS = {"allow_none": False}


def jaccard(first: set[str], second: set[str]) -> float:
    """|A ∩ B| / |A ∪ B|; two empty sets agree fully (1.0)."""
    union = first | second
    return 1.0 if not union else len(first & second) / len(union)


class MultiLabel(TaskType):
    key = "multi_label"
    name = "Multi-label"
    description = "Pick every label that applies (text or image)."
    media = ("text", "image")
    categorical = True
    widget = "annotation/widgets/multi_label.html"
    option_fields = (
        OptionSpec(
            "allow_none", bool, False, "Allow no label", "A worker may pick none of the labels."
        ),
    )

    def options_clean(self, options: Any, *, labels: Sequence[Mapping[str, str]]) -> dict:
        options = options_with_defaults(options, defaults=DEFAULTS)
        return {"allow_none": option_bool(options, "allow_none")}

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        return item_media_clean(data, media=self.media)

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        labels = answer_object(value, example='{"labels": ["a", "b"]}').get("labels")
        if not isinstance(labels, list):
            raise ValidationError({"value.labels": ["'labels' is a list of labels."]})
        allowed = config.label_values
        seen: set[str] = set()
        for index, label in enumerate(labels):
            where = f"value.labels[{index}]"
            if not isinstance(label, str) or label not in allowed:
                choices = ", ".join(allowed)
                raise ValidationError({where: [f"Unknown label {label!r}; use any of: {choices}."]})
            if label in seen:
                raise ValidationError({where: [f"Label {label!r} is given twice."]})
            seen.add(label)
        if not seen and not self._allow_none(config):
            raise ValidationError({"value.labels": ["Pick at least one label."]})
        return {"labels": [label for label in allowed if label in seen]}

    def categories(self, value: Mapping[str, Any], *, config: TaskConfig) -> list[str]:
        return list(value["labels"])

    def summary(self, value: Mapping[str, Any] | None) -> str:
        if value is None:
            return ""
        return ", ".join(value.get("labels", ())) or "(none)"

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """Per label, nominal alpha of present/absent over every annotator of an item (None where
        undefined); and the mean over items (with two or more answers) of the mean pairwise
        Jaccard similarity of the annotators' label sets."""
        items, workers, votes = votes_indexed(answers)
        chosen = [set(vote.value["labels"]) for vote in votes]
        per_label: dict[str, float | None] = {}
        for label in self._labels_of(config, votes):
            present = np.array([label in labels for labels in chosen], dtype=np.float64)
            per_label[label] = krippendorff_alpha(items, workers, present, level="nominal")
        item_means = []
        for item_votes in answers.values():
            similarities = [
                jaccard(set(a.value["labels"]), set(b.value["labels"]))
                for a, b in pairs_of(item_votes)
            ]
            if similarities:
                item_means.append(sum(similarities) / len(similarities))
        mean_jaccard = sum(item_means) / len(item_means) if item_means else None
        return {"per_label_alpha": per_label, "mean_jaccard": mean_jaccard}

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """Per label weighted majority: a label is kept when the weight of the answers that pick
        it is more than half the item's total weight.

        When nothing is kept and the project does not allow an empty answer, the label with the
        most weight is kept alone (None when no label has any weight or two labels tie for most).
        Support is the mean over labels of the weighted share of answers that agree with the
        consensus on that label (the winning side's share).
        """
        total = sum(vote_weight(vote) for vote in votes)
        if not votes or total <= 0:
            return None
        labels = self._labels_of(config, votes)
        weight = dict.fromkeys(labels, 0.0)
        for vote in votes:
            for label in set(vote.value["labels"]):
                weight[label] += vote_weight(vote)
        kept = {label for label in labels if weight[label] > total / 2}
        if not kept and not self._allow_none(config):
            ranked = sorted(weight.values(), reverse=True)
            if not ranked or ranked[0] <= 0:
                return None
            if len(ranked) > 1 and abs(ranked[0] - ranked[1]) <= 1e-12 * total:
                return None
            kept = {label for label in labels if weight[label] == ranked[0]}
        shares = [
            (weight[label] if label in kept else total - weight[label]) / total for label in labels
        ]
        support = sum(shares) / len(shares) if shares else 1.0
        return Consensus(
            value={"labels": [label for label in labels if label in kept]}, support=support
        )

    @staticmethod
    def _allow_none(config: TaskConfig) -> bool:
        return bool(config.options.get("allow_none", DEFAULTS["allow_none"]))

    @staticmethod
    def _labels_of(config: TaskConfig, votes: Sequence[Vote]) -> list[str]:
        """The label set in its order, then labels answers use that the set no longer has."""
        labels = list(config.label_values)
        known = set(labels)
        extra = {label for vote in votes for label in vote.value["labels"]} - known
        return labels + sorted(extra)


TASK_TYPE = MultiLabel()
