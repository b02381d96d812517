"""HTML pages of the quality app: the owner dashboard."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from core.http import HtmxHttpRequest
from quality.selectors import QUALITY_ROLES, quality_project_access, quality_summary_get


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Quality of a project for owners and reviewers; htmx polls refresh the stats region."""
    project, role = quality_project_access(user=request.user, project_id=pk)
    if project is None:
        raise Http404("No such project.")
    if role not in QUALITY_ROLES:
        raise PermissionDenied("Only the project's owners and reviewers see its quality.")
    context = {"project": project, "role": role, "summary": quality_summary_get(project=project)}
    template = "quality/dashboard.html"
    if request.htmx:
        template += "#quality-stats"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response
