"""Small pieces several task types share: item media checks and weighted votes."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from django.core.exceptions import ValidationError

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
