"""Formatting filters of the annotation pages: {% load annotation_tags %}."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from annotation.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(value: Any) -> SafeString:
    """Render a Markdown string (project instructions) as sanitised HTML."""
    return render_markdown("" if value is None else str(value))


@register.filter
def percent(part: Any, whole: Any) -> int:
    """`part` as a whole-number percentage of `whole` (0 when `whole` is empty)."""
    try:
        return round(100 * float(part) / float(whole)) if whole else 0
    except (TypeError, ValueError):
        return 0
