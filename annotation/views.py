"""HTML pages of the annotation app: project list, create, overview, settings and imports."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.forms import ImportForm, ProjectForm, option_summary
from annotation.imports import import_job_create
from annotation.models import ImportJob, Project, ProjectMember
from annotation.predictions import prediction_summary
from annotation.selectors import (
    import_job_get_for_user,
    import_job_list,
    project_list_with_progress,
    project_progress,
)
from annotation.services import project_create, project_update
from annotation.task_types import task_types
from core.http import HtmxHttpRequest

Role = ProjectMember.Role
RECENT_IMPORTS = 10
TYPE_CONFIG_PARTIAL = "annotation/_project_form_fields.html#type-config"


def _detail_context(
    project: Project, role: str | None, import_form: ImportForm | None = None
) -> dict[str, Any]:
    is_owner = role == Role.OWNER
    return {
        "project": project,
        "role": role,
        "active": "overview",
        "task_type": task_types().get(project.task_type),
        "task_options": option_summary(project.task_type, project.task_options or {}),
        "progress": project_progress(project=project),
        "is_owner": is_owner,
        "import_form": import_form or (ImportForm() if is_owner else None),
        "show_imports": role in MANAGERS,
        "imports": list(import_job_list(project=project)[:RECENT_IMPORTS])
        if role in MANAGERS
        else [],
        "prediction_summary": prediction_summary(project=project) if is_owner else [],
    }


@login_required
@require_GET
def project_list(request: HtmxHttpRequest) -> HttpResponse:
    """Projects the user manages (with progress) and projects the user labels."""
    projects = list(project_list_with_progress(user=request.user))
    managed = [
        p for p in projects if p.role in MANAGERS or (p.role is None and request.user.is_staff)
    ]
    labeling = [p for p in projects if p.role == Role.ANNOTATOR]
    context = {"managed": managed, "labeling": labeling}
    return render(request, "annotation/project_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def project_create_view(request: HtmxHttpRequest) -> HttpResponse:
    """Create a project; the creator becomes its owner.

    htmx GETs with `task_type` get only that type's part of the form (labels and options).
    A POST with `refresh` (the no-JavaScript "show options" button) shows the form again,
    unsaved and without errors, for the picked type.
    """
    if request.method == "GET" and request.htmx:
        return render(
            request, TYPE_CONFIG_PARTIAL, {"form": ProjectForm(initial=request.GET.dict())}
        )
    if request.method == "GET" or "refresh" in request.POST:
        form = ProjectForm(initial=request.POST.dict() if request.method == "POST" else None)
        return render(request, "annotation/project_form.html", {"form": form})
    form = ProjectForm(request.POST)
    if form.is_valid():
        try:
            project = project_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect("annotation:project-detail", pk=project.pk)
    return render(request, "annotation/project_form.html", {"form": form}, status=422)


@login_required
@require_GET
def project_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The project overview; htmx requests get only the progress stats (after an import)."""
    project, role = project_access(user=request.user, project_id=pk)
    context = _detail_context(project, role)
    if request.htmx:
        return render(request, "annotation/project_detail.html#project-stats", context)
    return render(request, "annotation/project_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The owner edits the project's name, instructions, labels, task options (the task type
    is fixed) and crowd settings."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    data = request.POST if request.method == "POST" else None
    form = ProjectForm(data, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            project_update(project=project, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            project.refresh_from_db()
            form.add_service_errors(exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("annotation:project-detail", pk=project.pk)
    context = {"form": form, "project": project, "role": role, "active": "settings"}
    status = 422 if form.errors else 200
    return render(request, "annotation/project_settings.html", context, status=status)


@login_required
@require_POST
def import_create(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Upload a file into the project (owners); htmx gets the refreshed import panel."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    form = ImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            import_job_create(
                project=project, user=request.user, uploaded_file=form.cleaned_data["file"]
            )
        except ValidationError as exc:
            form.add_error("file", exc.message_dict.get("file", exc.messages))
        else:
            if not request.htmx:
                messages.success(request, "Import started.")
                return redirect("annotation:project-detail", pk=project.pk)
            form = ImportForm()
    context = _detail_context(project, role, import_form=form)
    status = 422 if form.errors else 200
    if not request.htmx:
        return render(request, "annotation/project_detail.html", context, status=status)
    response = render(
        request, "annotation/project_detail.html#import-panel", context, status=status
    )
    return trigger_client_event(response, "import-finished")  # eager runs finish at once


@login_required
@require_GET
def import_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One import's progress and errors; htmx polls the fragment until the job finishes."""
    try:
        job = import_job_get_for_user(user=request.user, import_job_id=pk)
    except ImportJob.DoesNotExist:
        raise Http404("No such import.") from None
    project, role = project_access(
        user=request.user,
        project_id=job.project_id,
        roles=MANAGERS,
        denied="Only the project's owners and reviewers may see imports.",
    )
    compact = request.GET.get("compact") == "1"  # the row on the overview, not the page
    context = {
        "job": job,
        "project": project,
        "role": role,
        "active": "overview",
        "compact": compact,
    }
    if not request.htmx:
        return render(request, "annotation/import_detail.html", context)
    html = render_to_string("annotation/import_detail.html#import-progress", context, request)
    if not job.is_finished:
        return HttpResponse(html)
    return trigger_client_event(HttpResponseStopPolling(html), "import-finished")
