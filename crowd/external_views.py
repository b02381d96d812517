"""HTML pages for external workers and their set-up: the entry link and the completion page
(crowd.external has the binding rule), the qualification test, and the owners' pages that
configure studies and the test.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from annotation.access import OWNERS, project_access
from annotation.models import Project
from core.exceptions import ApplicationError
from core.http import HtmxHttpRequest
from crowd.external import (
    EntryInvalidError,
    EntryRefusedError,
    StudyPreviewError,
    entry_params_read,
    external_worker_enter,
    identity_complete,
    identity_get_bound,
    study_create,
    study_get_open,
    study_list,
    study_pool_choices,
    visit_progress,
)
from crowd.models import ExternalIdentity, ExternalStudy, Pool
from crowd.privacy import items_mask
from crowd.qualification import (
    qualification_answer,
    qualification_attempt_list,
    qualification_attempt_start,
    qualification_configure,
    qualification_get,
    qualification_get_active,
    qualification_items_choices,
    qualification_next_item,
    qualification_status,
)
from crowd.selectors import masking_for_worker
from crowd.services import worker_is_blocked, worker_may_label

SESSION_KEY = "assay_external"
AUTH_BACKEND = "django.contrib.auth.backends.ModelBackend"


class StudyForm(forms.Form):
    platform = forms.ChoiceField(choices=ExternalStudy.Platform.choices)
    pool = forms.ModelChoiceField(
        queryset=Pool.objects.none(),
        required=False,
        empty_label="The project's external pool (created if needed)",
    )
    quota = forms.IntegerField(min_value=1, max_value=10_000, initial=20, label="Items per visit")
    completion_code = forms.CharField(max_length=64)
    return_url = forms.URLField(required=False, max_length=200, assume_scheme="https")

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pool"].queryset = study_pool_choices(project=project)  # type: ignore[attr-defined]


class QualificationForm(forms.Form):
    items = forms.ModelMultipleChoiceField(
        queryset=None, widget=forms.CheckboxSelectMultiple, label="Gold items in the test"
    )
    pass_mark = forms.FloatField(min_value=0, max_value=1, initial=0.8)
    attempts_allowed = forms.IntegerField(min_value=1, max_value=100, initial=2)
    cooldown_seconds = forms.IntegerField(min_value=0, max_value=365 * 86_400, initial=86_400)
    active = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["items"].queryset = qualification_items_choices(project=project)  # type: ignore[attr-defined]


def _add_errors(form: forms.Form, error: ValidationError) -> None:
    errors = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    for name, texts in errors.items():
        form.add_error(name if name in form.fields else None, texts)


def _owner_project(request: HtmxHttpRequest, pk: int) -> tuple[Project, str]:
    return project_access(user=request.user, project_id=pk, roles=OWNERS)


# --- owners -----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def study_list_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The project's entry links for recruitment platforms; create one (owners only)."""
    project, role = _owner_project(request, pk)
    form = StudyForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            study = study_create(project=project, **form.cleaned_data)
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, f"Study created: {study.get_platform_display()}.")
            return redirect("external:study-list", pk=project.pk)
    context = {
        "project": project,
        "role": role,
        "form": form,
        "studies": study_list(project=project),
    }
    status = 422 if form.errors else 200
    return TemplateResponse(request, "crowd/external_study_list.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def qualification_settings(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Configure the project's qualification test and see every attempt (owners only)."""
    project, role = _owner_project(request, pk)
    qualification = qualification_get(project=project)
    initial: dict[str, Any] = {}
    if qualification is not None:
        initial = {
            "items": list(qualification.items.values_list("pk", flat=True)),
            "pass_mark": qualification.pass_mark,
            "attempts_allowed": qualification.attempts_allowed,
            "cooldown_seconds": qualification.cooldown_seconds,
            "active": qualification.active,
        }
    form = QualificationForm(request.POST or None, project=project, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            qualification_configure(
                project=project,
                item_ids=[item.pk for item in data.pop("items")],
                **data,
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, "Qualification test saved.")
            return redirect("external:qualification-settings", pk=project.pk)
    attempts = qualification_attempt_list(qualification=qualification) if qualification else []
    context = {"project": project, "role": role, "form": form, "attempts": attempts}
    if qualification is not None:
        context["test_size"] = qualification.items.count()
    status = 422 if form.errors else 200
    return TemplateResponse(request, "crowd/qualification_settings.html", context, status=status)


# --- external workers -------------------------------------------------------------------------


def visit_get(
    request: HtmxHttpRequest, project: Project
) -> tuple[ExternalIdentity, datetime] | None:
    """The external identity this browser session is bound to on `project`, and when the visit
    started; None for everyone else."""
    bound = request.session.get(SESSION_KEY)
    if not bound or not request.user.is_authenticated:
        return None
    try:
        identity = identity_get_bound(identity_id=bound.get("identity"), user=request.user)
    except ExternalIdentity.DoesNotExist:
        return None
    if identity.study.project_id != project.pk:
        return None
    return identity, datetime.fromisoformat(bound["started"])


def _refused(
    request: HtmxHttpRequest, study: ExternalStudy | None, message: str, status: int
) -> HttpResponse:
    context = {"study": study, "message": message}
    return TemplateResponse(request, "crowd/external_refused.html", context, status=status)


@require_http_methods(["GET"])
def study_entry(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The entry link: create or resume the external worker, log them in, send them to work."""
    try:
        study = study_get_open(slug=slug)
    except ExternalStudy.DoesNotExist:
        return _refused(request, None, "This study is closed or the link is wrong.", 404)
    try:
        params = entry_params_read(study=study, query=request.GET.dict())
        bound = request.session.get(SESSION_KEY) or {}
        identity, _created = external_worker_enter(
            study=study, params=params, bound_identity_id=bound.get("identity")
        )
    except (EntryInvalidError, EntryRefusedError, StudyPreviewError) as error:
        return _refused(request, study, error.message, error.status_code)
    same_visit = bound.get("identity") == identity.pk and request.user.pk == identity.user_id
    login(request, identity.user, backend=AUTH_BACKEND)
    started = bound["started"] if same_visit else timezone.now().isoformat()
    request.session[SESSION_KEY] = {"identity": identity.pk, "started": started}
    if identity.completed_at is not None:
        return redirect("external:study-done", slug=study.slug)
    return redirect("crowd:label", pk=study.project_id)


@login_required
@require_http_methods(["GET"])
def study_done(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The completion page: the code (and the way back to the platform) once the quota is done."""
    bound = request.session.get(SESSION_KEY) or {}
    try:
        identity = identity_get_bound(identity_id=bound.get("identity"), user=request.user)
    except ExternalIdentity.DoesNotExist:
        raise Http404("No study in this session.") from None
    study = identity.study
    if study.slug != slug:
        raise Http404("No study in this session.")
    if worker_is_blocked(worker=request.user, project=study.project):  # type: ignore[arg-type]
        return redirect("crowd:label", pk=study.project_id)
    if identity.completed_at is None:
        progress = visit_progress(
            identity=identity, started_at=datetime.fromisoformat(bound["started"])
        )
        if not progress.is_done:
            return redirect("crowd:label", pk=study.project_id)
        identity_complete(identity=identity)
    context = {"study": study, "project": study.project}
    return TemplateResponse(request, "crowd/external_done.html", context)


def _test_project(request: HtmxHttpRequest, pk: int) -> Project:
    project, _role = project_access(user=request.user, project_id=pk)
    if project.role is None or not worker_may_label(worker=request.user, project=project):  # type: ignore[arg-type]
        raise Http404("No such project.")
    return project


@login_required
@require_http_methods(["GET", "POST"])
def qualification_test(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The qualification test, one item at a time; then the result (and the way on)."""
    project = _test_project(request, pk)
    qualification = qualification_get_active(project=project)
    if qualification is None:
        return redirect("crowd:label", pk=project.pk)
    worker = request.user
    context: dict[str, Any] = {
        "project": project,
        "qualification": qualification,
        "role": "annotator",
    }
    status = 200
    if request.method == "POST":
        try:
            attempt = qualification_attempt_start(worker=worker, qualification=qualification)  # type: ignore[arg-type]
            item_id = int(request.POST.get("item", ""))
            qualification_answer(
                attempt=attempt,
                worker=worker,  # type: ignore[arg-type]
                item_id=item_id,
                label=request.POST.get("label", ""),
            )
        except ValueError:
            context["notice"], status = "Your answer was not saved: no item given.", 422
        except ValidationError as error:
            context["notice"], status = " ".join(error.messages), 422
        except ApplicationError as error:
            context["notice"], status = error.message, error.status_code
        if status == 200:
            return redirect("external:qualification-test", pk=project.pk)
    return _test_page(request, project, context, status)


def _test_page(
    request: HtmxHttpRequest, project: Project, context: dict[str, Any], status: int
) -> TemplateResponse:
    qualification = context["qualification"]
    state = qualification_status(worker=request.user, qualification=qualification)  # type: ignore[arg-type]
    context["status"] = state
    attempt = state.open_attempt
    if attempt is None and state.may_start and state.attempts_used == 0:
        attempt = qualification_attempt_start(worker=request.user, qualification=qualification)  # type: ignore[arg-type]
    if attempt is not None:
        item = qualification_next_item(attempt=attempt)
        if item is not None:
            items_mask([item], masking=masking_for_worker(worker=request.user, project=project))  # type: ignore[arg-type]
            context.update(
                item=item,
                position=len(attempt.answers) + 1,
                total=qualification.items.count(),
            )
    template = "crowd/qualification_test.html"
    return TemplateResponse(request, template, context, status=status)


@login_required
@require_http_methods(["POST"])
def qualification_retake(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Start another attempt after a failed one (when the cool-down is over)."""
    project = _test_project(request, pk)
    qualification = qualification_get_active(project=project)
    if qualification is not None:
        try:
            qualification_attempt_start(worker=request.user, qualification=qualification)  # type: ignore[arg-type]
        except ApplicationError as error:
            messages.error(request, error.message)
    return redirect(reverse("external:qualification-test", args=[project.pk]))
