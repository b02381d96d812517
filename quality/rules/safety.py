"""Regular expressions owners write: compiled with the `regex` package and time-limited.

A pattern is refused at save time when it does not compile (with the compiler's message) or
when it blows a quick adversarial self-test: a few pathological texts (long runs of one
character ending in a mismatch, the classic triggers of catastrophic backtracking) must each be
searched within SELF_TEST_SECONDS. At run time every search has a per-item timeout as well, so a
pattern that slips past the self-test still can never hang a worker.
"""

from __future__ import annotations

from functools import lru_cache

import regex
from django.core.exceptions import ValidationError

PATTERN_MAX = 1000
SELF_TEST_SECONDS = 0.05
# Long runs of one character with a mismatch at the end, and a few alternating forms.
SELF_TEST_TEXTS = (
    "a" * 30000 + "!",
    "A" * 30000 + "!",
    "0" * 30000 + "x",
    " " * 30000 + "!",
    "ab" * 15000 + "!",
    "a " * 15000 + "!",
    "x@" * 15000,
    "a-" * 15000 + "!",
    "\n" * 30000 + "!",
)


class PatternTooSlowError(Exception):
    """The pattern timed out on a self-test text."""


def pattern_flags(*, ignore_case: bool) -> int:
    """The flags owner patterns compile with (V0 semantics, Unicode; optional case folding)."""
    return regex.V0 | (regex.IGNORECASE if ignore_case else 0)


@lru_cache(maxsize=256)
def _self_tested(pattern: str, flags: int) -> regex.Pattern:
    compiled = regex.compile(pattern, flags)
    for text in SELF_TEST_TEXTS:
        try:
            compiled.search(text, timeout=SELF_TEST_SECONDS)
        except TimeoutError as exc:
            raise PatternTooSlowError(pattern) from exc
    return compiled


def pattern_compile(pattern: object, *, ignore_case: bool, where: str) -> regex.Pattern:
    """Compile an owner's pattern; ValidationError keyed `where` when it is not a non-empty
    string, does not compile (the compiler's message), or is too slow on the self-test texts."""
    if not isinstance(pattern, str) or not pattern:
        raise ValidationError({where: ["A regular expression (a non-empty string)."]})
    if len(pattern) > PATTERN_MAX:
        raise ValidationError({where: [f"At most {PATTERN_MAX} characters."]})
    try:
        return _self_tested(pattern, pattern_flags(ignore_case=ignore_case))
    except regex.error as exc:
        raise ValidationError({where: [f"Invalid regular expression: {exc}."]}) from None
    except PatternTooSlowError:
        message = (
            "This pattern is too slow on some texts (catastrophic backtracking, for example "
            "nested repeats like (a+)+); simplify it."
        )
        raise ValidationError({where: [message]}) from None
    except (OverflowError, RecursionError, MemoryError):
        raise ValidationError({where: ["This pattern is too large to compile."]}) from None
