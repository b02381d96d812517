"""The page comparing two versions of a project, and the same diff as a CSV download."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from annotation.models import Project
from annotation.selectors import project_role
from core.exceptions import ApplicationError
from core.http import HtmxHttpRequest
from quality.models import Release
from quality.releases import project_get_for_releases
from quality.releases.diff import (
    KINDS,
    PAGE_SIZE,
    Diff,
    diff_csv_lines,
    diff_kind_clean,
    release_diff,
    release_pair_get,
)

TEMPLATE = "quality/release_diff.html"


def diff_csv_response(diff: Diff, *, kind: str = "") -> StreamingHttpResponse:
    """The diff as a streamed CSV attachment (pages and the API)."""
    project = diff.new.project
    slug = slugify(project.name) or f"project-{project.pk}"
    name = f"{slug}-diff-{diff.old.tag}-{diff.new.tag}{f'-{kind}' if kind else ''}.csv"
    response = StreamingHttpResponse(
        diff_csv_lines(diff, kind=kind), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, max-age=0"
    return response


def _page_number(raw: Any) -> int:
    try:
        return max(int(raw), 1)
    except (TypeError, ValueError):
        return 1


@login_required
@require_GET
def release_diff_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Pick two versions; see counts of added, removed and changed items and a page of them."""
    project: Project = project_get_for_releases(user=request.user, project_id=pk)
    ready = list(
        Release.objects.filter(project=project, status=Release.Status.READY)
        .order_by("-version")
        .values_list("version", flat=True)
    )
    params = request.GET
    context: dict[str, Any] = {
        "project": project,
        "role": project_role(user=request.user, project=project) or "owner",
        "versions": ready,
        "kinds": KINDS,
        "selected_from": params.get("from", ""),
        "selected_to": params.get("to", ""),
        "kind": params.get("kind", ""),
        "diff": None,
    }
    if not context["selected_from"] and not context["selected_to"] and len(ready) >= 2:
        context["selected_from"], context["selected_to"] = str(ready[1]), str(ready[0])
    if "from" not in params and "to" not in params:
        return TemplateResponse(request, TEMPLATE, context)
    try:
        kind = diff_kind_clean(params.get("kind"))
        old, new = release_pair_get(
            user=request.user,
            project_id=project.pk,
            from_version=params.get("from"),
            to_version=params.get("to"),
        )
        diff = release_diff(old=old, new=new)
    except ApplicationError as exc:
        context["error"] = exc.message
        template = f"{TEMPLATE}#diff-results" if request.htmx else TEMPLATE
        # htmx swaps 422s: a bad pick shows its message in place of the results.
        status = 422 if request.htmx and exc.status_code == 400 else exc.status_code
        return TemplateResponse(request, template, context, status=status)
    if params.get("format") == "csv":
        return diff_csv_response(diff, kind=kind)
    total = diff.count(kind)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    number = min(_page_number(params.get("page")), pages)
    query = f"from={old.version}&to={new.version}" + (f"&kind={kind}" if kind else "")
    context.update(
        diff=diff,
        kind=kind,
        changes=diff.page(number=number, kind=kind),
        page=number,
        pages=pages,
        total=total,
        query=query,
        previous_page=number - 1 if number > 1 else None,
        next_page=number + 1 if number < pages else None,
    )
    template = f"{TEMPLATE}#diff-results" if request.htmx else TEMPLATE
    return TemplateResponse(request, template, context)
