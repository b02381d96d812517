"""The audit log page of a project (owners)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from annotation.access import OWNERS, project_access
from core.audit import ACTIONS, audit_action_families, audit_list
from core.http import HtmxHttpRequest

PAGE_SIZE = 50
DENIED = "Only the project's owners may read its audit log."


@login_required
@require_GET
def audit_page(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    """Who did what on the project, newest first; filtered by action family or code."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS, denied=DENIED)
    action = request.GET.get("action", "").strip()
    events = Paginator(audit_list(project, {"action": action}), PAGE_SIZE)
    context = {
        "project": project,
        "role": role,
        "action": action,
        "families": audit_action_families(),
        "codes": ACTIONS,
        "events": events.get_page(request.GET.get("page")),
    }
    return TemplateResponse(request, "core/audit_list.html", context)
