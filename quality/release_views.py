"""HTML pages for dataset releases: the version list, one release's page, and downloads."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING, HttpResponseClientRedirect

from annotation.markdown import render_markdown
from annotation.models import Project
from annotation.selectors import project_role
from core.exceptions import ApplicationError
from core.http import HtmxHttpRequest
from quality.metrics import agreement_reading_alpha, agreement_reading_kappa
from quality.models import Release
from quality.releases import (
    project_get_for_releases,
    release_create,
    release_formats,
    release_get_for_user,
    release_label_rows,
    release_list_for_project,
    release_may_manage,
    release_retry,
)
from quality.releases.delivery import release_download_response
from quality.releases.policy import policy_clean
from quality.releases.splits import DEFAULT_SPLIT, split_clean

LIST_TEMPLATE = "quality/release_list.html"
DETAIL_TEMPLATE = "quality/release_detail.html"
FINISHED = (Release.Status.READY, Release.Status.FAILED)


POLICY_MODES = [
    ("consensus", "Every item with a consensus"),
    ("confidence", "Only items at or above a confidence"),
    ("expert", "Only items decided by an expert"),
]
# Service error paths (policy.*, split.*) and the form fields that show them.
FORM_FIELDS = {
    "policy.mode": "policy_mode",
    "policy.min_confidence": "min_confidence",
    "policy.exclude_flagged": "exclude_flagged",
    "split.seed": "split_seed",
    "split.ratios.train": "split_train",
    "split.ratios.validation": "split_validation",
    "split.ratios.test": "split_test",
    "split.ratios": "split_ratios",
    "split.group_key": "split_group_key",
}


class ReleaseForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    notes = forms.CharField(max_length=10_000, required=False, widget=forms.Textarea)
    purpose = forms.CharField(max_length=10_000, required=False, widget=forms.Textarea)
    licence = forms.CharField(max_length=200, required=False)
    intended_use = forms.CharField(max_length=10_000, required=False, widget=forms.Textarea)
    include_raw = forms.BooleanField(required=False, label="Include raw annotations")
    include_identities = forms.BooleanField(
        required=False, label="Include annotator identities (usernames, emails, platform ids)"
    )
    policy_mode = forms.ChoiceField(choices=POLICY_MODES, initial="consensus", required=False)
    min_confidence = forms.FloatField(required=False, initial=0.8)
    exclude_flagged = forms.BooleanField(required=False)
    split_enabled = forms.BooleanField(required=False)
    split_seed = forms.IntegerField(required=False, initial=DEFAULT_SPLIT["seed"])
    split_train = forms.FloatField(required=False, initial=DEFAULT_SPLIT["ratios"]["train"])
    split_validation = forms.FloatField(
        required=False, initial=DEFAULT_SPLIT["ratios"]["validation"]
    )
    split_test = forms.FloatField(required=False, initial=DEFAULT_SPLIT["ratios"]["test"])
    split_group_key = forms.CharField(max_length=100, required=False)
    # No input: carries the errors of the ratios as a whole (they must add up to 1).
    split_ratios = forms.Field(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("include_identities") and not cleaned.get("include_raw"):
            self.add_error(
                "include_identities",
                "Identities are only exported with raw annotations: tick both or neither.",
            )
        mode = cleaned.get("policy_mode") or "consensus"
        policy = {
            "mode": mode,
            "min_confidence": cleaned.get("min_confidence") if mode == "confidence" else None,
            "exclude_flagged": bool(cleaned.get("exclude_flagged")),
        }
        split = None
        if cleaned.get("split_enabled"):
            split = {
                "seed": cleaned.get("split_seed"),
                "ratios": {
                    "train": cleaned.get("split_train"),
                    "validation": cleaned.get("split_validation"),
                    "test": cleaned.get("split_test"),
                },
                "group_key": cleaned.get("split_group_key") or "",
            }
            if split["seed"] is None:
                split.pop("seed")  # the default seed
        for key, value, clean in (("policy", policy, policy_clean), ("split", split, split_clean)):
            if self.has_error(FORM_FIELDS[f"{key}.{'mode' if key == 'policy' else 'seed'}"]):
                continue
            try:
                cleaned[key] = clean(value)
            except ApplicationError as exc:
                self.add_service_errors(exc)
        return cleaned

    def add_service_errors(self, exc: ApplicationError) -> None:
        """Show a service's field errors (policy.min_confidence, split.ratios...) on the form."""
        for path, messages_ in (exc.fields or {"": [exc.message]}).items():
            field = FORM_FIELDS.get(path)
            for message in messages_:
                if field and not self.has_error(field):
                    self.add_error(field, message)
                elif not field:
                    self.add_error(None, message)

    def release_kwargs(self) -> dict[str, Any]:
        """The cleaned form as release_create's keyword arguments."""
        raw = {"min_confidence", "exclude_flagged"}  # folded into policy and split
        return {
            key: value
            for key, value in self.cleaned_data.items()
            if key not in raw and not key.startswith(("policy_", "split_"))
        }


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
            try:
                release = release_create(
                    project=project, user=request.user, **form.release_kwargs()
                )
            except ApplicationError as exc:
                form.add_service_errors(exc)
            else:
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
    downloadable = release_formats()
    order = {fmt: n for n, fmt in enumerate(downloadable)}
    files = sorted(release.files.all(), key=lambda f: (order.get(f.format, len(order)), f.format))
    agreement = (release.manifest or {}).get("agreement", {})
    finished = release.status in FINISHED
    return {
        "project": release.project,
        "release": release,
        "finished": finished,
        "may_manage": release_may_manage(user=request.user, project=release.project),
        "label_rows": release_label_rows(release=release),
        # every file of the release, the data files first; some (manifest) are not served
        "files": [
            {
                "file": file,
                "name": file.path.rsplit("/", 1)[-1],
                "downloadable": file.format in order and file.format != "manifest",
            }
            for file in files
        ],
        "kappa_reading": agreement_reading_kappa(agreement.get("fleiss_kappa")),
        "alpha_reading": agreement_reading_alpha(agreement.get("krippendorff_alpha")),
        "datasheet": render_markdown(release.datasheet) if release.datasheet else "",
        "other_versions": (
            release_list_for_project(project=release.project)
            .filter(status=Release.Status.READY)
            .exclude(pk=release.pk)
            .values_list("version", flat=True)
            if finished
            else []
        ),
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
def release_download(request: HtmxHttpRequest, pk: int, fmt: str) -> HttpResponseBase:
    """Send a release file once its checksum is verified (ranges supported), or redirect to a
    signed object-storage URL (quality.releases.delivery)."""
    release = release_get_for_user(user=request.user, release_id=pk)
    try:
        return release_download_response(
            release=release,
            fmt=fmt,
            range_header=request.headers.get("Range"),
            actor=request.user,
            if_range=request.headers.get("If-Range"),
        )
    except ApplicationError as exc:
        context = {"release": release, "project": release.project, "error": exc.message}
        return TemplateResponse(
            request, "quality/release_error.html", context, status=exc.status_code
        )
