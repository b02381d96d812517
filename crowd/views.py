"""HTML pages of the crowd: the labeling page with its two fragment endpoints, and members
(with blocking and unblocking workers).

The labeling page keeps the worker one item ahead: it shows the current item and holds the
next one, so a submit swaps items on the client at once while the answer (and the claim that
refills the buffer) travels to the server in the background.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotation.access import OWNERS, project_access
from annotation.models import Prediction, Project
from annotation.task_types import task_config_of, task_type_get
from core.exceptions import ApplicationError
from core.http import HtmxHttpRequest
from crowd.external import visit_list_ready, visit_progress
from crowd.external_views import visit_get
from crowd.forms import LabelSkipForm, LabelSubmitForm, MemberAddForm, WorkerBlockForm
from crowd.models import Assignment, WorkerBlock
from crowd.pools import RequirementNotMetError
from crowd.privacy import items_mask
from crowd.qualification import qualification_required
from crowd.selectors import (
    assignment_get_for_worker,
    masking_for_worker,
    member_list,
    suggestion_list_for_worker,
    worker_block_get,
    worker_block_list,
    worker_submitted_count,
)
from crowd.services import (
    WorkerBlockedError,
    assignment_list_ready,
    assignment_skip,
    assignment_submit,
    client_key_compute,
    project_member_add,
    project_worker_block,
    worker_may_label,
    worker_unblock,
)
from crowd.services.members import project_member_remove

LABEL_TEMPLATE = "crowd/assignment_label.html"
QUALIFY_FIRST = "Pass the project's qualification test first: reload the page."
NOT_SAVED = "Your last answer was not saved."


def _widget_context(project: Project) -> dict[str, Any]:
    """What the page's widget needs: the type's key, its templates and its configuration."""
    config = task_config_of(project)
    key = config.task_type
    # The stored options are already clean; cleaning again fills defaults of options added later.
    options = task_type_get(key).options_clean(config.options, labels=config.labels)
    return {
        "task_type": key,
        "widget_controls": f"annotation/widgets/{key}_controls.html",
        "config": {"labels": [dict(label) for label in config.labels], "options": options},
    }


def _error_text(error: ValidationError) -> str:
    """A validation error as one line naming where each problem is (`value.spans[2].end: ...`)."""
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    parts = []
    for name, messages_ in error.message_dict.items():
        text = " ".join(messages_)
        parts.append(text if name == "__all__" else f"{name}: {text}")
    return " ".join(parts)


def _labeling_project(request: HtmxHttpRequest, pk: int) -> tuple[Project, str]:
    """The project and the user's role: 404 when they hold none on it, 403 when not a labeler."""
    project, role = project_access(user=request.user, project_id=pk)
    if project.role is None:  # staff see every project but label only where they are members
        raise Http404("No such project.")
    if not worker_may_label(worker=request.user, project=project):  # type: ignore[arg-type]
        raise PermissionDenied("You do not label for this project.")
    return project, role


def _own_assignment(request: HtmxHttpRequest, project: Project, assignment_id: int) -> Assignment:
    try:
        assignment = assignment_get_for_worker(worker=request.user, assignment_id=assignment_id)  # type: ignore[arg-type]
    except Assignment.DoesNotExist:
        raise Http404("No such assignment.") from None
    if assignment.project_id != project.pk:
        raise Http404("No such assignment.")
    return assignment


def _client_key(request: HtmxHttpRequest) -> str:
    meta = request.META
    return client_key_compute(
        address=meta.get("REMOTE_ADDR", ""), user_agent=meta.get("HTTP_USER_AGENT", "")
    )


def _mask_for_worker(request: HtmxHttpRequest, project: Project, ready: list[Assignment]) -> None:
    """Mask personal data in the items about to be rendered for an external worker."""
    if ready:
        masking = masking_for_worker(worker=request.user, project=project)  # type: ignore[arg-type]
        items_mask((assignment.item for assignment in ready), masking=masking)


def _list_ready(
    request: HtmxHttpRequest, project: Project, held: list[int], pending: list[int]
) -> list[Assignment]:
    """The worker's buffer refill; an external worker's visit never goes past its quota."""
    visit = visit_get(request, project)
    if visit is None:
        return assignment_list_ready(
            worker=request.user,  # type: ignore[arg-type]
            project=project,
            held=held,
            pending=pending,
        )
    identity, started_at = visit
    return visit_list_ready(identity=identity, started_at=started_at, held=held, pending=pending)


def _qualify_first(request: HtmxHttpRequest, project: Project) -> TemplateResponse:
    """No work, and why, for a worker who has not passed the project's qualification test."""
    context = {"project": project, "ready": [], "notice": QUALIFY_FIRST}
    return TemplateResponse(request, f"{LABEL_TEMPLATE}#label-refill", context, status=403)


def _suggest(request: HtmxHttpRequest, project: Project, ready: list[Assignment]) -> None:
    """Attach to each ready assignment the pre-label the worker is shown, as the JSON the page's
    widget reads (`assignment.suggestion_json`; "" for none)."""
    shown = suggestion_list_for_worker(
        worker=request.user,  # type: ignore[arg-type]
        project=project,
        items=(assignment.item for assignment in ready),
    )
    for assignment in ready:
        prediction = shown.get(assignment.item_id)
        payload = "" if prediction is None else json.dumps(_suggestion_payload(prediction))
        assignment.suggestion_json = payload  # type: ignore[attr-defined]


def _suggestion_payload(prediction: Prediction) -> dict[str, Any]:
    """What the widget needs of a suggestion: its value, and where it comes from."""
    return {
        "id": prediction.pk,
        "value": prediction.value,
        "source": prediction.source,
        "source_label": prediction.get_source_display(),
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
    }


def _suggestion_id(request: HtmxHttpRequest) -> int | None:
    """The pre-label the page says it showed (checked by the service; junk is no suggestion)."""
    raw = request.POST.get("suggestion", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 19 else None


def _refill(
    request: HtmxHttpRequest, project: Project, form: LabelSkipForm, *, status: int, notice: str
) -> TemplateResponse:
    if qualification_required(worker=request.user, project=project):  # type: ignore[arg-type]
        return _qualify_first(request, project)
    try:
        ready = _list_ready(request, project, form.ids("held"), form.ids("pending"))
    except (WorkerBlockedError, RequirementNotMetError) as error:  # no more work, and why
        ready, status, notice = [], error.status_code, notice or error.message
    _mask_for_worker(request, project, ready)
    _suggest(request, project, ready)
    context = {"project": project, "ready": ready, "notice": notice, **_widget_context(project)}
    return TemplateResponse(request, f"{LABEL_TEMPLATE}#label-refill", context, status=status)


@login_required
@require_http_methods(["GET"])
def label_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The labeling page: current item, the next one held ready, and the task type's widget."""
    project, role = _labeling_project(request, pk)
    if qualification_required(worker=request.user, project=project):  # type: ignore[arg-type]
        return redirect("external:qualification-test", pk=project.pk)
    context: dict[str, Any] = {"project": project, "role": role, **_widget_context(project)}
    visit = visit_get(request, project)
    if visit is not None:  # an external worker: the completion code once the quota is done
        context["done_url"] = reverse("external:study-done", args=[visit[0].study.slug])
        if visit_progress(identity=visit[0], started_at=visit[1]).is_done:
            return redirect(context["done_url"])
    try:
        context["ready"] = _list_ready(request, project, [], [])
    except WorkerBlockedError as error:  # the page says so, with the owner's reason
        context["blocked"] = error.block
        return TemplateResponse(request, LABEL_TEMPLATE, context, status=error.status_code)
    except RequirementNotMetError as error:  # the page says which requirement is missing
        context["unmet"] = error.message
        return TemplateResponse(request, LABEL_TEMPLATE, context, status=error.status_code)
    _mask_for_worker(request, project, context["ready"])  # the buffered next item too
    _suggest(request, project, context["ready"])
    context["done"] = worker_submitted_count(worker=request.user, project=project)  # type: ignore[arg-type]
    return TemplateResponse(request, LABEL_TEMPLATE, context)


@login_required
@require_POST
def label_submit(request: HtmxHttpRequest, pk: int, assignment_id: int) -> HttpResponse:
    """Store the answer; reply with the item(s) that refill the page's buffer."""
    project, _role = _labeling_project(request, pk)
    assignment = _own_assignment(request, project, assignment_id)
    if qualification_required(worker=request.user, project=project):  # type: ignore[arg-type]
        return _qualify_first(request, project)
    form = LabelSubmitForm(request.POST)
    if not form.is_valid():
        notice = f"{NOT_SAVED} {_error_text(ValidationError(form.errors.as_data()))}"
        return _refill(request, project, form, status=422, notice=notice)
    status, notice = 200, ""
    try:
        assignment_submit(
            assignment=assignment,
            worker=request.user,  # type: ignore[arg-type]
            value=form.cleaned_data["value"],
            duration_ms=form.cleaned_data["duration_ms"],
            client_key=_client_key(request),
            suggestion_id=_suggestion_id(request),
        )
    except ApplicationError as error:
        status, notice = error.status_code, f"{NOT_SAVED} {error.message}"
    except ValidationError as error:  # the answer does not fit the task type or the item
        status, notice = 422, f"{NOT_SAVED} {_error_text(error)}"
    return _refill(request, project, form, status=status, notice=notice)


@login_required
@require_POST
def label_skip(request: HtmxHttpRequest, pk: int, assignment_id: int) -> HttpResponse:
    """Give the item back; reply with the item(s) that refill the page's buffer."""
    project, _role = _labeling_project(request, pk)
    assignment = _own_assignment(request, project, assignment_id)
    form = LabelSkipForm(request.POST)
    form.is_valid()  # only the id lists are read, and ids() copes with malformed ones
    status, notice = 200, ""
    try:
        assignment_skip(assignment=assignment, worker=request.user)  # type: ignore[arg-type]
    except ApplicationError as error:
        status, notice = error.status_code, f"The skip was not recorded. {error.message}"
    return _refill(request, project, form, status=status, notice=notice)


def _members_project(request: HtmxHttpRequest, pk: int) -> tuple[Project, str]:
    return project_access(
        user=request.user,
        project_id=pk,
        roles=OWNERS,
        denied="Only the project's owners manage members.",
    )


def _members_page(
    request: HtmxHttpRequest,
    project: Project,
    role: str,
    *,
    form: MemberAddForm | None = None,
    block_form: WorkerBlockForm | None = None,
    partial: str = "",
    remove_error: str = "",
) -> TemplateResponse:
    form = form or MemberAddForm()
    block_form = block_form or WorkerBlockForm()
    context: dict[str, Any] = {
        "project": project,
        "role": role,
        "members": member_list(project=project),
        "blocks": worker_block_list(project=project),
        "form": form,
        "block_form": block_form,
        "remove_error": remove_error,
    }
    template = "crowd/member_list.html" + (f"#{partial}" if partial and request.htmx else "")
    invalid = form.errors or block_form.errors or remove_error
    return TemplateResponse(request, template, context, status=422 if invalid else 200)


def _back_to_members(request: HtmxHttpRequest, project: Project) -> HttpResponse:
    url = reverse("crowd:members", args=[project.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_http_methods(["GET", "POST"])
def project_members(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """List the project's members and blocks; add an existing user with a role (owners only)."""
    project, role = _members_project(request, pk)
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            project_member_add(
                project=project, username=data["username"], role=data["role"], actor=request.user
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"{data['username']} is now {data['role']} on this project.")
            return _back_to_members(request, project)
    return _members_page(request, project, role, form=form, partial="member-form")


@login_required
@require_POST
def member_remove(request: HtmxHttpRequest, pk: int, user_id: int) -> HttpResponse:
    """Remove a member (owners only); their reservations go back to the queue."""
    project, role = _members_project(request, pk)
    try:
        removed = project_member_remove(project=project, user_id=user_id, actor=request.user)  # type: ignore[arg-type]
    except ValidationError as error:
        if not member_list(project=project).filter(user_id=user_id).exists():
            raise Http404("No such member.") from None
        text = " ".join(error.messages)
        return _members_page(request, project, role, partial="member-list", remove_error=text)
    messages.success(request, f"{removed.user.username} was removed from this project.")
    if removed.user_id == request.user.pk:  # an owner who left no longer sees the page
        url = reverse("annotation:project-list")
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return _back_to_members(request, project)


@login_required
@require_POST
def member_block(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Block a worker of the project with a reason (owners only); their reservations go back."""
    project, role = _members_project(request, pk)
    block_form = WorkerBlockForm(request.POST)
    if block_form.is_valid():
        data = block_form.cleaned_data
        try:
            project_worker_block(
                project=project,
                username=data["username"],
                reason=data["reason"],
                created_by=request.user,  # type: ignore[arg-type]
            )
        except ValidationError as error:
            errors = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
            for name, texts in errors.items():
                field = "username" if name == "worker" else name
                block_form.add_error(field if field in block_form.fields else None, texts)
        else:
            messages.success(request, f"{data['username']} is blocked from this project.")
            return _back_to_members(request, project)
    return _members_page(request, project, role, block_form=block_form, partial="block-form")


@login_required
@require_POST
def member_unblock(request: HtmxHttpRequest, pk: int, block_id: int) -> HttpResponse:
    """Lift one of the project's blocks (owners only)."""
    project, _role = _members_project(request, pk)
    try:
        block = worker_block_get(project=project, block_id=block_id)
    except WorkerBlock.DoesNotExist:
        raise Http404("No such block.") from None
    worker_unblock(block=block, lifted_by=request.user)  # type: ignore[arg-type]
    messages.success(request, f"{block.worker.username} may label this project again.")
    return _back_to_members(request, project)
