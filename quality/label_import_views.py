"""HTML page where owners import labels collected elsewhere: a CSV of item,worker,label
(quality.label_import) or a Label Studio JSON export (quality.labelstudio)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from annotation.access import OWNERS, project_access
from annotation.models import Project
from core.http import HtmxHttpRequest
from quality.label_import import LabelImportError, label_import_run
from quality.labelstudio import LabelStudioImportError, labelstudio_import

TEMPLATE = "quality/label_import.html"
LABELSTUDIO = "labelstudio"  # the `format` a post of the Label Studio form carries


class LabelImportForm(forms.Form):
    file = forms.FileField(
        label="Labels file (CSV)",
        help_text="UTF-8 CSV with the header item,worker,label and an optional text column.",
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
    )


class LabelStudioImportForm(forms.Form):
    file = forms.FileField(
        label="Label Studio export (JSON)",
        help_text="The JSON export of a Label Studio project: a list of tasks with annotations.",
        widget=forms.FileInput(attrs={"accept": ".json,application/json"}),
    )


@login_required
@require_http_methods(["GET", "POST"])
def label_import(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Owners upload external labels; the result or every problem by line is shown (htmx swaps
    the panel)."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    if request.method == "POST" and request.POST.get("format") == LABELSTUDIO:
        return _labelstudio_import(request, project, role)
    form = LabelImportForm(request.POST or None, request.FILES or None)
    context: dict[str, Any] = {
        "project": project,
        "role": role,
        "form": form,
        "ls_form": LabelStudioImportForm(),
    }
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                context["result"] = label_import_run(
                    project=project, file=form.cleaned_data["file"], uploaded_by=request.user
                )
                context["form"], status = LabelImportForm(), 200
            except LabelImportError as exc:
                context["errors"] = exc.errors
                context["error_summary"] = exc.message
    template = f"{TEMPLATE}#label-import-panel" if request.htmx else TEMPLATE
    return render(request, template, context, status=status)


def _labelstudio_import(request: HtmxHttpRequest, project: Project, role: str) -> HttpResponse:
    """The Label Studio form's post: the import's counts, or its problems by task and field."""
    form = LabelStudioImportForm(request.POST, request.FILES)
    context: dict[str, Any] = {
        "project": project,
        "role": role,
        "form": LabelImportForm(),
        "ls_form": form,
    }
    status = 422
    if form.is_valid():
        try:
            context["ls_result"] = labelstudio_import(
                project=project, file=form.cleaned_data["file"], uploaded_by=request.user
            )
            context["ls_form"], status = LabelStudioImportForm(), 200
        except LabelStudioImportError as exc:
            context["ls_errors"] = exc.errors
            context["ls_error_summary"] = exc.message
    template = f"{TEMPLATE}#labelstudio-import-panel" if request.htmx else TEMPLATE
    return render(request, template, context, status=status)
