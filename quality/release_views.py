"""HTML pages for dataset releases: the version list, one release's page, and downloads."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING, HttpResponseClientRedirect

from annotation.models import Project
from annotation.selectors import project_role
from core.exceptions import ApplicationError
from core.http import HtmxHttpRequest
from quality.metrics import agreement_reading_alpha, agreement_reading_kappa
from quality.models import Release
from quality.releases import (
    project_get_for_releases,
    release_create,
    release_file_open,
    release_formats,
    release_get_for_user,
    release_label_rows,
    release_list_for_project,
    release_may_manage,
    release_retry,
)

LIST_TEMPLATE = "quality/release_list.html"
DETAIL_TEMPLATE = "quality/release_detail.html"
FINISHED = (Release.Status.READY, Release.Status.FAILED)


class ReleaseForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    notes = forms.CharField(max_length=10_000, required=False, widget=forms.Textarea)
    include_raw = forms.BooleanField(required=False, label="Include raw annotations")
    include_identities = forms.BooleanField(
        required=False, label="Include annotator identities (usernames, emails, platform ids)"
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("include_identities") and not cleaned.get("include_raw"):
            self.add_error(
                "include_identities",
                "Identities are only exported with raw annotations: tick both or neither.",
            )
        return cleaned


def _role(request: HtmxHttpRequest, project: Project) -> str:
    role = project_role(user=request.user, project=project)
    return role or "owner"  # staff without a membership see the owner's tabs


@login_required
@require_http_methods(["GET", "POST"])
def release_list(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The project's versions; owners also get the form that builds a new one."""
    project = project_get_for_releases(user=request.user, project_id=pk)
    may_manage = release_may_manage(user=request.user, project=project)
    form = ReleaseForm(request.POST or None)
    if request.method == "POST":
        if not may_manage:
            raise PermissionDenied("Only the project's owners can create releases.")
        if form.is_valid():
            release = release_create(project=project, user=request.user, **form.cleaned_data)
            messages.success(request, f"Building {release.tag}.")
            url = reverse("releases:release-detail", args=[release.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    context = {
        "project": project,
        "role": _role(request, project),
        "releases": release_list_for_project(project=project),
        "may_manage": may_manage,
        "form": form,
    }
    template = f"{LIST_TEMPLATE}#release-form" if request.htmx else LIST_TEMPLATE
    return TemplateResponse(request, template, context, status=422 if form.errors else 200)


def _detail_context(request: HtmxHttpRequest, release: Release) -> dict[str, Any]:
    files = {f.format: f for f in release.files.all()}
    agreement = (release.manifest or {}).get("agreement", {})
    return {
        "project": release.project,
        "release": release,
        "finished": release.status in FINISHED,
        "may_manage": release_may_manage(user=request.user, project=release.project),
        "label_rows": release_label_rows(release=release),
        "files": [files[fmt] for fmt in release_formats() if fmt in files],
        "kappa_reading": agreement_reading_kappa(agreement.get("fleiss_kappa")),
        "alpha_reading": agreement_reading_alpha(agreement.get("krippendorff_alpha")),
    }


@login_required
@require_GET
def release_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One release: build progress (polled by htmx every second) and then its manifest."""
    release = release_get_for_user(user=request.user, release_id=pk)
    context = _detail_context(request, release)
    if request.htmx:
        response = TemplateResponse(request, f"{DETAIL_TEMPLATE}#release-status", context)
        if context["finished"]:
            response.status_code = HTMX_STOP_POLLING
        return response
    context["role"] = _role(request, release.project)
    return TemplateResponse(request, DETAIL_TEMPLATE, context)


@login_required
@require_POST
def release_retry_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Build a failed release again (owners)."""
    release = release_get_for_user(user=request.user, release_id=pk)
    try:
        release_retry(release=release, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    url = reverse("releases:release-detail", args=[release.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_GET
def release_download(request: HtmxHttpRequest, pk: int, fmt: str) -> HttpResponse:
    """Send a release file as an attachment once its checksum is verified."""
    release = release_get_for_user(user=request.user, release_id=pk)
    try:
        download = release_file_open(release=release, fmt=fmt)
    except ApplicationError as exc:
        context = {"release": release, "project": release.project, "error": exc.message}
        return TemplateResponse(
            request, "quality/release_error.html", context, status=exc.status_code
        )
    return download.response()
