"""Rating: one whole-number score on a scale per item (text or image).

Options: `scale_min` (default 1) and `scale_max` (default 5), whole numbers with 2 to 10 points.
Stored answer: {"rating": int}. Agreement: "alpha_ordinal" and "alpha_interval"; consensus: the
weighted median (the lower one on an exact tie), supported by the weighted share of answers equal
to it. As categories, a rating is its number as text ("4").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError

from annotation.task_types._common import (
    answer_object,
    item_media_clean,
    option_int,
    options_with_defaults,
    vote_weight,
    votes_indexed,
)
from annotation.task_types._reliability import krippendorff_alpha
from annotation.task_types.base import Consensus, OptionSpec, TaskConfig, TaskType, Vote

DEFAULTS = {"scale_min": 1, "scale_max": 5}
POINTS = (2, 10)  # fewest and most points on a scale
BOUND = 1000  # |scale ends| stay small, readable numbers
_INTEGER = re.compile(r"-?[0-9]{1,4}")


def rating_scale(config: TaskConfig) -> tuple[int, int]:
    """(scale_min, scale_max) of a project's configuration."""
    options = config.options
    return (
        int(options.get("scale_min", DEFAULTS["scale_min"])),
        int(options.get("scale_max", DEFAULTS["scale_max"])),
    )


class Rating(TaskType):
    key = "rating"
    name = "Rating"
    description = "Score each item on a scale (for example 1 to 5)."
    media = ("text", "image")
    categorical = True
    category_key = "rating"
    ordinal = True
    needs_labels = False
    widget = "annotation/widgets/rating.html"
    option_fields = (
        OptionSpec("scale_min", int, 1, "Lowest rating"),
        OptionSpec("scale_max", int, 5, "Highest rating", "2 to 10 points in all."),
    )

    def options_clean(self, options: Any, *, labels: Sequence[Mapping[str, str]]) -> dict:
        options = options_with_defaults(options, defaults=DEFAULTS)
        low = option_int(options, "scale_min", low=-BOUND, high=BOUND)
        high = option_int(options, "scale_max", low=-BOUND, high=BOUND)
        if high <= low:
            raise ValidationError({"options.scale_max": ["'scale_max' must be above 'scale_min'."]})
        fewest, most = POINTS
        if not fewest <= high - low + 1 <= most:
            raise ValidationError(
                {
                    "options.scale_max": [
                        f"A scale has {fewest} to {most} points, not {high - low + 1}."
                    ]
                }
            )
        return {"scale_min": low, "scale_max": high}

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        return item_media_clean(data, media=self.media)

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        """A whole number on the scale; a form's text ("4") is read as that number."""
        rating = answer_object(value, example='{"rating": 4}').get("rating")
        if isinstance(rating, str) and _INTEGER.fullmatch(rating.strip()):
            rating = int(rating.strip())
        low, high = rating_scale(config)
        if isinstance(rating, bool) or not isinstance(rating, int) or not low <= rating <= high:
            raise ValidationError(
                {
                    "value.rating": [
                        f"A rating is a whole number from {low} to {high}, not {rating!r}."
                    ]
                }
            )
        return {"rating": rating}

    def category_values(self, *, config: TaskConfig) -> list[str]:
        """Every point of the scale, low to high."""
        low, high = rating_scale(config)
        return [str(rating) for rating in range(low, high + 1)]

    def categories(self, value: Mapping[str, Any], *, config: TaskConfig) -> list[str]:
        return [str(value["rating"])]

    def value_of_category(self, category: str) -> dict:
        return {"rating": int(category)}

    def summary(self, value: Mapping[str, Any] | None) -> str:
        return "" if value is None else str(value.get("rating", ""))

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """Krippendorff's alpha at the ordinal and the interval level over the ratings of items
        with two or more answers."""
        items, workers, votes = votes_indexed(answers)
        ratings = np.array([float(vote.value["rating"]) for vote in votes], dtype=np.float64)
        return {
            "alpha_ordinal": krippendorff_alpha(items, workers, ratings, level="ordinal"),
            "alpha_interval": krippendorff_alpha(items, workers, ratings, level="interval"),
        }

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """The weighted median rating: the smallest rating whose cumulative weight reaches half
        the total (so an exact half-and-half split takes the lower one). Support is the weighted
        share of answers equal to it. None when there is no weight at all."""
        weights: dict[int, float] = {}
        for vote in votes:
            rating = int(vote.value["rating"])
            weights[rating] = weights.get(rating, 0.0) + vote_weight(vote)
        total = sum(weights.values())
        if total <= 0:
            return None
        cumulative = 0.0
        for rating in sorted(weights):
            cumulative += weights[rating]
            if weights[rating] > 0 and cumulative >= total / 2 - 1e-12 * total:
                return Consensus(value={"rating": rating}, support=weights[rating] / total)
        raise AssertionError("cumulative weight reaches the total")  # pragma: no cover


TASK_TYPE = Rating()
