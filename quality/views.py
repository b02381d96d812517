"""HTML pages of the quality app: the owner dashboard."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from annotation.access import project_access
from core.http import HtmxHttpRequest
from quality.selectors import (
    DEFAULT_WORKER_SORT,
    QUALITY_ROLES,
    WORKER_SORTS,
    quality_summary_get,
    worker_table_get,
)


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Quality of a project for owners and reviewers; htmx polls refresh the stats region.

    `?sort=` orders the worker table (a WORKER_SORTS key, '-' for descending) and `?page=`
    pages it; the poll keeps both.
    """
    project, role = project_access(
        user=request.user,
        project_id=pk,
        roles=QUALITY_ROLES,
        denied="Only the project's owners and reviewers see its quality.",
    )
    sort = request.GET.get("sort", DEFAULT_WORKER_SORT)
    context = {
        "project": project,
        "role": role,
        "summary": quality_summary_get(project=project, with_workers=False),
        "table": worker_table_get(project=project, sort=sort, page=request.GET.get("page", 1)),
        "sort_keys": list(WORKER_SORTS),
        "here": request.get_full_path(),
    }
    template = "quality/dashboard.html"
    if request.htmx:
        template += "#quality-stats"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response
