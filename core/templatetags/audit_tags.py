"""Formatting audit event details for the audit page."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()

VALUE_MAX = 60


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= VALUE_MAX else f"{text[: VALUE_MAX - 1]}…"


@register.filter
def audit_summary(details: Any) -> str:
    """One line per detail: "field: before → after" for changes, "name: value" otherwise."""
    if not isinstance(details, dict):
        return _short(details)
    lines = []
    for name, value in details.items():
        if isinstance(value, dict) and set(value) == {"before", "after"}:
            lines.append(f"{name}: {_short(value['before'])} → {_short(value['after'])}")
        else:
            lines.append(f"{name}: {_short(value)}")
    return "\n".join(lines)
