"""HTML page where owners import labels collected elsewhere (see quality.label_import)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from annotation.access import OWNERS, project_access
from core.http import HtmxHttpRequest
from quality.label_import import LabelImportError, label_import_run

TEMPLATE = "quality/label_import.html"


class LabelImportForm(forms.Form):
    file = forms.FileField(
        label="Labels file (CSV)",
        help_text="UTF-8 CSV with the header item,worker,label and an optional text column.",
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
    )


@login_required
@require_http_methods(["GET", "POST"])
def label_import(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Owners upload external labels; the result or every problem by line is shown (htmx swaps
    the panel)."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    form = LabelImportForm(request.POST or None, request.FILES or None)
    context: dict[str, Any] = {"project": project, "role": role, "form": form}
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
