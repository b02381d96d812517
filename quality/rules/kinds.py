"""The kinds of labeling rules: their configuration, checked with field errors, and matching.

- keywords: {"keywords": [str, ...], "field": "text"}: a keyword or phrase occurs in the field as
  whole words, ignoring case (a phrase's spaces match any run of whitespace);
- regex: {"pattern": str, "field": "text", "ignore_case": false}: the pattern is found in the field;
- field: {"field": str, "operator": str, "value": ...}: a condition on an item data field
  (`OPERATORS`); numbers compare as numbers when both sides are numbers, strings otherwise;
- span_pattern (spans projects): {"pattern": str, "ignore_case": false} or {"keywords": [...]}:
  every non-empty match on the project's text field is a span with the rule's label.

A categorical rule emits its label when it matches and abstains otherwise (also when the field is
missing or not comparable). Text fields that hold numbers are matched as their decimal text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import regex
from django.core.exceptions import ValidationError

from quality.rules.safety import pattern_compile, pattern_flags

KEYWORDS_MAX = 500
KEYWORD_LENGTH_MAX = 200
FIELD_LENGTH_MAX = 100
VALUE_LENGTH_MAX = 1000
IN_VALUES_MAX = 500
OPERATORS = ("equals", "not_equals", "contains", "in", "greater_than", "less_than")
Span = tuple[int, int]
_WORD_EDGES = regex.compile(r"\w(?:.*\w)?", regex.DOTALL)


def _error(where: str, message: str) -> ValidationError:
    return ValidationError({where: [message]})


def _field_clean(config: Mapping[str, Any], *, default: str | None = "text") -> str:
    raw = config.get("field", default)
    if not isinstance(raw, str) or not raw.strip() or len(raw) > FIELD_LENGTH_MAX:
        raise _error("config.field", f"An item data field name (1 to {FIELD_LENGTH_MAX} chars).")
    return raw.strip()


def _bool_clean(config: Mapping[str, Any], name: str, default: bool) -> bool:
    raw = config.get(name, default)
    if not isinstance(raw, bool):
        raise _error(f"config.{name}", "true or false.")
    return raw


def _keywords_clean(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise _error("config.keywords", "A non-empty list of words or phrases.")
    if len(raw) > KEYWORDS_MAX:
        raise _error("config.keywords", f"At most {KEYWORDS_MAX} keywords.")
    cleaned: list[str] = []
    for index, keyword in enumerate(raw):
        text = " ".join(keyword.split()) if isinstance(keyword, str) else ""
        if not text or len(text) > KEYWORD_LENGTH_MAX:
            message = f"A word or phrase of 1 to {KEYWORD_LENGTH_MAX} characters."
            raise _error(f"config.keywords[{index}]", message)
        if text.casefold() not in {k.casefold() for k in cleaned}:
            cleaned.append(text)
    return cleaned


def keywords_pattern(keywords: list[str]) -> str:
    """One whole-word alternation for the keywords, longest first (so spans are the longest)."""
    parts = [
        r"\s+".join(regex.escape(word) for word in keyword.split())
        for keyword in sorted(keywords, key=len, reverse=True)
    ]
    if all(_WORD_EDGES.fullmatch(keyword) for keyword in keywords):  # \b is faster
        return r"\b(?:" + "|".join(parts) + r")\b"
    return r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)"


def _unknown_refuse(config: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValidationError({f"config.{name}": ["Unknown setting."] for name in unknown})


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _scalar_clean(raw: Any, where: str) -> str | int | float:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _error(where, "A text or a number.")
    if isinstance(raw, str) and len(raw) > VALUE_LENGTH_MAX:
        raise _error(where, f"At most {VALUE_LENGTH_MAX} characters.")
    return raw


def _condition_clean(config: Mapping[str, Any]) -> dict[str, Any]:
    _unknown_refuse(config, {"field", "operator", "value"})
    field = _field_clean(config, default=None)
    operator = config.get("operator")
    if operator not in OPERATORS:
        raise _error("config.operator", f"One of: {', '.join(OPERATORS)}.")
    raw = config.get("value")
    if operator == "in":
        if not isinstance(raw, list) or not raw or len(raw) > IN_VALUES_MAX:
            raise _error("config.value", f"A list of 1 to {IN_VALUES_MAX} values.")
        value: Any = [_scalar_clean(v, f"config.value[{i}]") for i, v in enumerate(raw)]
    elif operator in ("greater_than", "less_than"):
        if _number(raw) is None:
            raise _error("config.value", "A number.")
        value = _number(raw)
    else:
        value = _scalar_clean(raw, "config.value")
    return {"field": field, "operator": operator, "value": value}


def config_clean(kind: str, config: Any, *, span_field: str | None = None) -> dict[str, Any]:
    """A rule's configuration for `kind`, checked; errors keyed `config.<setting>`.

    `span_field` is the spans project's text field (span patterns always match on it).
    """
    if not isinstance(config, dict):
        raise _error("config", "The rule's settings are an object.")
    if kind == "keywords":
        _unknown_refuse(config, {"keywords", "field"})
        return {"keywords": _keywords_clean(config.get("keywords")), "field": _field_clean(config)}
    if kind == "regex":
        _unknown_refuse(config, {"pattern", "field", "ignore_case"})
        ignore_case = _bool_clean(config, "ignore_case", False)
        pattern = config.get("pattern")
        pattern_compile(pattern, ignore_case=ignore_case, where="config.pattern")
        return {"pattern": pattern, "field": _field_clean(config), "ignore_case": ignore_case}
    if kind == "field":
        return _condition_clean(config)
    if kind == "span_pattern":
        _unknown_refuse(config, {"pattern", "keywords", "ignore_case"})
        if ("pattern" in config) == ("keywords" in config):
            raise _error("config.pattern", "Give either a pattern or a list of keywords.")
        if "keywords" in config:
            return {"keywords": _keywords_clean(config["keywords"])}
        ignore_case = _bool_clean(config, "ignore_case", False)
        pattern_compile(config["pattern"], ignore_case=ignore_case, where="config.pattern")
        return {"pattern": config["pattern"], "ignore_case": ignore_case}
    raise _error("kind", "One of: keywords, regex, field, span_pattern.")


def _text_of(data: Mapping[str, Any], field: str) -> str | None:
    value = data.get(field)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _same(left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    return isinstance(left, str | int | float) and str(left) == str(right)


def _condition_holds(condition: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    if condition["field"] not in data:
        return False
    actual, operator, value = data[condition["field"]], condition["operator"], condition["value"]
    if isinstance(actual, bool) or actual is None:
        actual = None if actual is None else str(actual).lower()
    if actual is None:
        return False
    if operator == "equals":
        return _same(actual, value)
    if operator == "not_equals":
        return isinstance(actual, str | int | float) and not _same(actual, value)
    if operator == "contains":
        if isinstance(actual, list):
            return any(_same(element, value) for element in actual)
        return isinstance(actual, str) and str(value).casefold() in actual.casefold()
    if operator == "in":
        return any(_same(actual, element) for element in value)
    number = _number(actual)
    if number is None:
        return False
    return number > value if operator == "greater_than" else number < value


@dataclass(frozen=True)
class Matcher:
    """A compiled rule. `search(data, timeout)` answers for one item's data: True/False for
    categorical rules, the list of (start, end) matches for span rules. Raises TimeoutError
    when a pattern runs past `timeout` seconds."""

    spans: bool
    search: Callable[[Mapping[str, Any], float], Any]


def matcher_build(kind: str, config: Mapping[str, Any], *, span_field: str = "text") -> Matcher:
    """The matcher of a rule whose `config` is already clean (regex.error if it no longer
    compiles)."""
    if kind == "field":
        return Matcher(spans=False, search=lambda data, _timeout: _condition_holds(config, data))
    if "keywords" in config:
        compiled = regex.compile(keywords_pattern(config["keywords"]), regex.V0 | regex.IGNORECASE)
    else:  # checked at save time; the per-item timeout guards patterns saved before a check
        compiled = regex.compile(
            config["pattern"], pattern_flags(ignore_case=config["ignore_case"])
        )
    if kind == "span_pattern":

        def spans(data: Mapping[str, Any], timeout: float) -> list[Span]:
            text = data.get(span_field)
            if not isinstance(text, str):
                return []
            return [
                match.span()
                for match in compiled.finditer(text, timeout=timeout)
                if match.end() > match.start()
            ]

        return Matcher(spans=True, search=spans)
    field = config["field"]

    def found(data: Mapping[str, Any], timeout: float) -> bool:
        text = _text_of(data, field)
        return text is not None and compiled.search(text, timeout=timeout) is not None

    return Matcher(spans=False, search=found)
