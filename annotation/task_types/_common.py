"""Small pieces several task types share: item media checks, options, weighted votes and the
sparse vote arrays agreement figures are computed from."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from django.core.exceptions import ValidationError

from annotation.task_types.base import Vote

T = TypeVar("T")

TEXT_MAX = 1_000_000  # characters of one item text


def item_media_clean(data: Any, *, media: tuple[str, ...]) -> dict:
    """An item holds a non-empty `text` or an `image` reference (per the type's media).

    An image item is {"image": "<storage path or http(s) URL>", "width": px, "height": px};
    width and height are needed where answers are checked against the image (boxes).
    """
    if not isinstance(data, dict):
        raise ValidationError({"data": ["An item's data is a JSON object."]})
    if "text" in media and "text" in data:
        text = data["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValidationError({"data.text": ["'text' must be a non-empty string."]})
        if len(text) > TEXT_MAX:
            raise ValidationError({"data.text": [f"At most {TEXT_MAX} characters."]})
        return data
    if "image" in media and "image" in data:
        image = data["image"]
        if not isinstance(image, str) or not image.strip():
            raise ValidationError({"data.image": ["'image' is a storage path or a URL."]})
        for name in ("width", "height"):
            size = data.get(name)
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 1
            ):
                raise ValidationError({f"data.{name}": ["A whole number of pixels, at least 1."]})
        return data
    wanted = " or ".join(repr(name) for name in media)
    raise ValidationError({"data": [f"An item needs {wanted}."]})


def weighted_plurality(
    choices: Iterable[tuple[Hashable, float]],
) -> tuple[Hashable, float] | None:
    """The choice with the largest total weight and its share of all weight; None on a tie
    for first place or when there is no weight at all."""
    totals: dict[Hashable, float] = {}
    for choice, weight in choices:
        totals[choice] = totals.get(choice, 0.0) + float(weight)
    total = sum(totals.values())
    if not totals or total <= 0:
        return None
    ranked = sorted(totals.items(), key=lambda pair: pair[1], reverse=True)
    if len(ranked) > 1 and abs(ranked[0][1] - ranked[1][1]) <= 1e-12 * total:
        return None
    return ranked[0][0], ranked[0][1] / total


# --- options ---------------------------------------------------------------------------------


def options_with_defaults(options: Any, *, defaults: Mapping[str, Any]) -> dict:
    """The owner's options over the type's defaults; unknown names are refused by name."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValidationError({"options": ["Options are an object."]})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValidationError({f"options.{name}": ["Unknown option."] for name in unknown})
    return {**defaults, **options}


def option_bool(options: Mapping[str, Any], name: str) -> bool:
    """Option `name` when it is true or false; otherwise an error keyed `options.<name>`."""
    value = options[name]
    if not isinstance(value, bool):
        raise ValidationError({f"options.{name}": [f"'{name}' is true or false."]})
    return value


def option_int(options: Mapping[str, Any], name: str, *, low: int, high: int) -> int:
    """Option `name` when it is a whole number in [low, high]; otherwise an error keyed
    `options.<name>`."""
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError({f"options.{name}": [f"'{name}' is a whole number {low}-{high}."]})
    return value


def answer_object(value: Any, *, example: str) -> dict:
    """The answer when it is a JSON object; otherwise an error keyed `value`."""
    if not isinstance(value, dict):
        raise ValidationError({"value": [f"An answer is an object like {example}."]})
    return value


# --- agreement input -------------------------------------------------------------------------


def votes_indexed(
    answers: Mapping[Any, Sequence[Vote]],
) -> tuple[np.ndarray, np.ndarray, list[Vote]]:
    """Every vote with its item index (position of the item in `answers`) and worker index
    (first-seen order): the sparse arrays the reliability coefficients take."""
    items: list[int] = []
    workers: list[int] = []
    votes: list[Vote] = []
    worker_index: dict[int, int] = {}
    for position, item_votes in enumerate(answers.values()):
        for vote in item_votes:
            items.append(position)
            workers.append(worker_index.setdefault(vote.worker_id, len(worker_index)))
            votes.append(vote)
    return np.array(items, dtype=np.int64), np.array(workers, dtype=np.int64), votes


def category_codes(values: Iterable[Hashable], *, order: Sequence[Hashable] = ()) -> np.ndarray:
    """Class codes of categorical values: `order` first, unseen values after in first-seen order."""
    codes = {value: index for index, value in enumerate(order)}
    return np.array([codes.setdefault(value, len(codes)) for value in values], dtype=np.int64)


def pairs_of(values: Sequence[T]) -> Iterator[tuple[T, T]]:
    """Every unordered pair of one item's votes (or of anything derived from them)."""
    return itertools.combinations(values, 2)


def vote_weight(vote: Vote) -> float:
    """A vote's weight as a non-negative float (negative weights count as zero)."""
    return max(float(vote.weight), 0.0)
