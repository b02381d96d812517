"""HTML pages of pay: the project's pay page (owners and reviewers), its write endpoints, the
payout CSV, and a worker's own earnings page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import Annotation, Project, ProjectMember
from core.http import HtmxHttpRequest
from crowd.models import PayDecision
from crowd.pay import (
    annotation_decide,
    annotation_get_for_decision,
    annotation_list_for_worker,
    annotation_list_undecided,
    bonus_grant,
    bonus_list,
    fair_pay_get,
    gold_accuracy_get,
    ledger_get,
    pay_decision_list_recent,
    pay_settings_get,
    pay_settings_update,
    payout_export,
    payout_filename,
)
from crowd.pay.forms import BonusForm, DecisionForm, PayoutForm, PaySettingsForm

PAGE = "crowd/pay_overview.html"
UNDECIDED_SHOWN = 50
RECENT_SHOWN = 20


def _done(request: HtmxHttpRequest, project: Project) -> HttpResponse:
    """After a write: back to the pay page (a client-side redirect for htmx)."""
    page = reverse("pay:overview", args=[project.pk])
    return HttpResponseClientRedirect(page) if request.htmx else HttpResponseRedirect(page)


def _settings_initial(project: Project) -> dict[str, Any]:
    pay = pay_settings_get(project=project)
    return {
        "currency": pay.currency,
        "reward_cents": pay.reward_cents,
        "gold_reward_cents": pay.gold_reward_cents,
        "fair_pay_floor_cents_per_hour": pay.fair_pay_floor_cents_per_hour,
    }


def _page(request: HtmxHttpRequest, project: Project, role: str, **forms: Any) -> dict[str, Any]:
    is_owner = role == ProjectMember.Role.OWNER or request.user.is_staff
    undecided = annotation_list_undecided(project=project)
    context = {
        "project": project,
        "role": role,
        "is_owner": is_owner,
        "pay": pay_settings_get(project=project),
        "fair_pay": fair_pay_get(project=project),
        "undecided": list(undecided[:UNDECIDED_SHOWN]),
        "undecided_count": undecided.count(),
        "recent": list(pay_decision_list_recent(project=project)[:RECENT_SHOWN]),
        "ledger": ledger_get(project=project) if is_owner else None,
        "settings_form": PaySettingsForm(initial=_settings_initial(project)),
        "bonus_form": BonusForm(),
        "payout_form": PayoutForm(),
        "decision_error": "",
    }
    context.update(forms)
    return context


@login_required
@require_GET
def pay_overview(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    """The project's pay: settings, fair-pay monitor, work to decide, ledger and exports."""
    project, role = project_access(user=request.user, project_id=pk, roles=MANAGERS)
    return TemplateResponse(request, PAGE, _page(request, project, role))


@login_required
@require_POST
def pay_settings_save(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Save the reward and floor (owners); 422 with the form when it is invalid."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    form = PaySettingsForm(request.POST)
    if form.is_valid():
        try:
            pay_settings_update(project=project, **form.cleaned_data)
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                form.add_error(name if name in form.fields else None, messages)
        else:
            return _done(request, project)
    context = _page(request, project, role, settings_form=form)
    return TemplateResponse(request, f"{PAGE}#pay-settings", context, status=422)


@login_required
@require_POST
def pay_decide(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Approve, reject or overturn one answer (owners and reviewers)."""
    project, role = project_access(user=request.user, project_id=pk, roles=MANAGERS)
    form = DecisionForm(request.POST)
    error = "Choose approve or reject for one of this project's answers."
    if form.is_valid():
        try:
            annotation = annotation_get_for_decision(
                project=project, annotation_id=form.cleaned_data["annotation"]
            )
            annotation_decide(
                annotation=annotation,
                status=form.cleaned_data["status"],
                reason=form.cleaned_data["reason"],
                decided_by=request.user,  # type: ignore[arg-type]
                source=PayDecision.Source.REVIEWER
                if role == ProjectMember.Role.REVIEWER
                else PayDecision.Source.OWNER,
            )
        except Annotation.DoesNotExist:
            error = "That answer is not in this project."
        except ValidationError as invalid:
            error = " ".join(invalid.messages)
        else:
            return _done(request, project)
    context = _page(request, project, role, decision_error=error)
    return TemplateResponse(request, f"{PAGE}#pay-decisions", context, status=422)


@login_required
@require_POST
def pay_bonus(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Grant a worker a bonus with a note (owners)."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    form = BonusForm(request.POST)
    if form.is_valid():
        worker = get_user_model().objects.filter(username=form.cleaned_data["username"]).first()
        try:
            if worker is None:
                raise ValidationError({"worker": ["No such user."]})
            bonus_grant(
                project=project,
                worker=worker,
                amount_cents=form.cleaned_data["amount_cents"],
                note=form.cleaned_data["note"],
                granted_by=request.user,  # type: ignore[arg-type]
            )
        except ValidationError as error:
            for name, messages in error.message_dict.items():
                field = {"worker": "username"}.get(name, name)
                form.add_error(field if field in form.fields else None, messages)
        else:
            return _done(request, project)
    context = _page(request, project, role, bonus_form=form)
    return TemplateResponse(request, f"{PAGE}#pay-bonus", context, status=422)


@login_required
@require_GET
def pay_payout(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The payout CSV for ?from=&to= (owners), with workers' identities only when the owner
    ticks ?identities=1; the page again with errors when invalid."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    form = PayoutForm(
        {
            "start": request.GET.get("from"),
            "end": request.GET.get("to"),
            "identities": request.GET.get("identities"),
        }
    )
    if not form.is_valid():
        context = _page(request, project, role, payout_form=form)
        return TemplateResponse(request, PAGE, context, status=422)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    identities = form.cleaned_data["identities"]
    response = HttpResponse(
        payout_export(
            project=project, start=start, end=end, identities=identities, actor=request.user
        ),
        content_type="text/csv; charset=utf-8",
    )
    name = payout_filename(project=project, start=start, end=end, identities=identities)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
@require_GET
def pay_earnings(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    """A worker's own earnings on the project, gold accuracy, effective rate and work status."""
    project, role = project_access(user=request.user, project_id=pk)
    me = request.user
    ledger = ledger_get(project=project, worker=me)  # type: ignore[arg-type]
    work = Paginator(annotation_list_for_worker(project=project, worker=me), 50)  # type: ignore[arg-type]
    context = {
        "project": project,
        "role": role,
        "pay": pay_settings_get(project=project),
        "row": ledger.rows[0] if ledger.rows else None,
        "fair_pay": fair_pay_get(project=project, worker=me),  # type: ignore[arg-type]
        "gold": gold_accuracy_get(project=project, worker=me),  # type: ignore[arg-type]
        "work": work.get_page(request.GET.get("page")),
        "bonuses": bonus_list(project=project, worker=me),  # type: ignore[arg-type]
    }
    return TemplateResponse(request, "crowd/pay_earnings.html", context)
