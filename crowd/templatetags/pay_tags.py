"""Pay on other apps' pages: {% load pay_tags %} then {% fair_pay_notice project %}."""

from __future__ import annotations

from typing import Any

from django import template

from annotation.models import Project
from crowd.pay import fair_pay_get

register = template.Library()


@register.inclusion_tag("crowd/_fair_pay_notice.html")
def fair_pay_notice(project: Project) -> dict[str, Any]:
    """The fair-pay warning for the project's owners: median seconds per answer, the hourly
    rate it implies and the floor, with a link to the pay page. Renders nothing when the rate
    is at or above the floor or unknown. Two queries (settings, one aggregate)."""
    return {"project": project, "fair_pay": fair_pay_get(project=project)}
