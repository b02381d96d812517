"""Free text: a short written answer per item (text or image), such as a transcription.

Options: `max_length` (default 1000, 1 to 10000 characters), `allow_empty` (default false) and
`case_sensitive` (default false). Stored answer: {"text": str}, stripped of surrounding
whitespace. Answers are compared after normalisation: Unicode NFC, surrounding whitespace
stripped, inner whitespace runs collapsed to one space, and case folded unless `case_sensitive`.

Agreement: "exact_match" (share of annotator pairs, pooled over items, whose normalised answers
are equal) and "char_similarity" (mean over the same pairs of a normalised Levenshtein
similarity of the normalised answers, written here: 1 - edit distance / longer length, 1.0 for
two empty answers). Not difflib's ratio: without autojunk it is quadratic in slow Python (seconds
for two 10,000-character answers), and with autojunk it scores long similar texts near 0.
Consensus: the normalised answer with the most weight (a tie for first place has none), written
in that group's most frequent original spelling (ties: the lexicographically smallest).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from annotation.task_types._common import (
    answer_object,
    item_media_clean,
    option_bool,
    option_int,
    options_with_defaults,
    pairs_of,
    vote_weight,
    weighted_plurality,
)
from annotation.task_types.base import Consensus, OptionSpec, TaskConfig, TaskType, Vote

DEFAULTS = {"max_length": 1000, "allow_empty": False, "case_sensitive": False}
LENGTH_MAX = 10_000
SUMMARY_LENGTH = 80


def text_normalised(text: str, *, case_sensitive: bool = False) -> str:
    """The form answers are compared in: NFC, whitespace runs collapsed to single spaces and
    trimmed, and case folded unless `case_sensitive`."""
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if not case_sensitive:
        text = unicodedata.normalize("NFC", text.casefold())
    return text


def levenshtein(first: str, second: str) -> int:
    """The edit distance (insertions, deletions, substitutions of code points) of two strings.

    Bit-parallel (Myers 1999, in Hyyrö's form for whole strings): the shorter string's columns are
    the bits of Python integers, so one pass over the longer string costs O(len × len / word).
    """
    if len(first) < len(second):
        first, second = second, first
    size = len(second)
    if size == 0:
        return len(first)
    positions: dict[str, int] = {}
    for index, char in enumerate(second):
        positions[char] = positions.get(char, 0) | (1 << index)
    mask = (1 << size) - 1
    last = 1 << (size - 1)
    plus, minus, distance = mask, 0, size  # vertical +1 / -1 deltas of the DP column
    for char in first:
        equal = positions.get(char, 0)
        vertical = equal | minus
        horizontal = ((((equal & plus) + plus) & mask) ^ plus) | equal
        up = (minus | ~(horizontal | plus)) & mask
        down = plus & horizontal
        if up & last:
            distance += 1
        elif down & last:
            distance -= 1
        up = ((up << 1) | 1) & mask
        down = (down << 1) & mask
        plus = (down | ~(vertical | up)) & mask
        minus = up & vertical
    return distance


def char_similarity(first: str, second: str) -> float:
    """Normalised Levenshtein similarity: 1 - distance / length of the longer string (1.0 when
    both are empty)."""
    longest = max(len(first), len(second))
    return 1.0 if longest == 0 else 1.0 - levenshtein(first, second) / longest


class FreeText(TaskType):
    key = "free_text"
    name = "Free text"
    description = "Write a short answer for each item (text or image), such as a transcription."
    media = ("text", "image")
    needs_labels = False
    widget = "annotation/widgets/free_text.html"
    option_fields = (
        OptionSpec(
            "max_length", int, 1000, "Longest answer (characters)", "1 to 10000.", minimum=1
        ),
        OptionSpec("allow_empty", bool, False, "Allow an empty answer"),
        OptionSpec(
            "case_sensitive",
            bool,
            False,
            "Case matters for agreement",
            "Otherwise answers are compared ignoring case.",
        ),
    )

    def options_clean(self, options: Any, *, labels: Sequence[Mapping[str, str]]) -> dict:
        options = options_with_defaults(options, defaults=DEFAULTS)
        return {
            "max_length": option_int(options, "max_length", low=1, high=LENGTH_MAX),
            "allow_empty": option_bool(options, "allow_empty"),
            "case_sensitive": option_bool(options, "case_sensitive"),
        }

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        return item_media_clean(data, media=self.media)

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        text = answer_object(value, example='{"text": "an answer"}').get("text")
        if not isinstance(text, str):
            raise ValidationError({"value.text": ["'text' is a string."]})
        text = text.strip()
        options = {**DEFAULTS, **config.options}
        if len(text) > options["max_length"]:
            raise ValidationError(
                {"value.text": [f"At most {options['max_length']} characters, not {len(text)}."]}
            )
        if not text and not options["allow_empty"]:
            raise ValidationError({"value.text": ["Write an answer; it may not be empty."]})
        return {"text": text}

    def summary(self, value: Mapping[str, Any] | None) -> str:
        if value is None:
            return ""
        text = " ".join(str(value.get("text", "")).split())
        if len(text) > SUMMARY_LENGTH:
            return text[: SUMMARY_LENGTH - 1] + "…"
        return text

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """Exact match and character similarity over every pair of an item's answers, pooled
        over items (None when no item has two answers)."""
        case_sensitive = self._case_sensitive(config)
        matches = 0
        similarity = 0.0
        pairs = 0
        for votes in answers.values():
            texts = [text_normalised(v.value["text"], case_sensitive=case_sensitive) for v in votes]
            for first, second in pairs_of(texts):
                pairs += 1
                matches += first == second
                similarity += 1.0 if first == second else char_similarity(first, second)
        if not pairs:
            return {"exact_match": None, "char_similarity": None}
        return {"exact_match": matches / pairs, "char_similarity": similarity / pairs}

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """The normalised answer with the most weight, in its most frequent original spelling."""
        case_sensitive = self._case_sensitive(config)
        groups = [
            (text_normalised(vote.value["text"], case_sensitive=case_sensitive), vote_weight(vote))
            for vote in votes
        ]
        winner = weighted_plurality(groups)
        if winner is None:
            return None
        group, support = winner
        spellings = Counter(
            vote.value["text"]
            for vote, (normalised, _) in zip(votes, groups, strict=True)
            if normalised == group
        )
        text = min(spellings, key=lambda spelling: (-spellings[spelling], spelling))
        return Consensus(value={"text": text}, support=support)

    @staticmethod
    def _case_sensitive(config: TaskConfig) -> bool:
        return bool(config.options.get("case_sensitive", DEFAULTS["case_sensitive"]))


TASK_TYPE = FreeText()
