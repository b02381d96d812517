"""Owner pages of the quality engine: settings (method, doubt, adaptive gold, spam rules) and
actions (what rules and owners did to workers, undo, the gold pool and promotion)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotation.access import OWNERS, project_access
from annotation.models import Project
from core.http import HtmxHttpRequest
from quality.forms import GoldPromoteForm, QualityActionForm, QualityConfigForm, RuleRows
from quality.models import ProjectScore, WorkerScore
from quality.services import (
    gold_candidate_list,
    gold_promote,
    quality_action_create,
    quality_action_get,
    quality_action_list,
    quality_action_undo,
    quality_config_get,
    quality_config_update,
)
from quality.spam import DEFAULT_RULES, rules_clean, rules_to_json

DENIED = "Only the project's owners may change its quality rules."
FILTERS = {"active": True, "undone": False, "all": None}


def _owner_project(request: HtmxHttpRequest, pk: int) -> tuple[Project, str]:
    return project_access(user=request.user, project_id=pk, roles=OWNERS, denied=DENIED)


@login_required
@require_http_methods(["GET", "POST"])
def quality_settings(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The owner edits the project's QualityConfig; rules are rows of a table."""
    project, role = _owner_project(request, pk)
    config = quality_config_get(project=project)
    if request.method == "POST":
        form = QualityConfigForm(request.POST)
        rules = RuleRows.from_post(request.POST)
        raw_rules = rules.cleaned()
        if form.is_valid():
            try:
                quality_config_update(
                    project=project,
                    actor=request.user,
                    **form.cleaned_data,
                    spam_rules=_rules_to_store(raw_rules),
                )
            except ValidationError as exc:
                form.add_service_errors(exc)
                rules.add_service_errors(exc)
            else:
                messages.success(request, "Quality settings saved. Scores update shortly.")
                return redirect("quality:settings", pk=project.pk)
        else:
            _check_rules(rules, raw_rules)
    else:
        form = QualityConfigForm(initial=QualityConfigForm.initial_for(config))
        rules = RuleRows.from_config(config)
    context = {"project": project, "role": role, "form": form, "rules": rules, "active": "quality"}
    status = 422 if form.errors or rules.has_errors else 200
    return render(request, "quality/settings.html", context, status=status)


def _rules_to_store(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The defaults, saved unchanged, are stored as [] so the project keeps following them."""
    try:
        if rules_to_json(rules_clean(raw)) == rules_to_json(DEFAULT_RULES):
            return []
    except ValidationError:
        pass
    return raw


def _check_rules(rules: RuleRows, raw: list[dict[str, Any]]) -> None:
    """Show rule errors even when another field is invalid."""
    try:
        rules_clean(raw)
    except ValidationError as exc:
        rules.add_service_errors(exc)


def _actions_context(
    project: Project, role: str, status_filter: str, action_form: QualityActionForm | None = None
) -> dict[str, Any]:
    workers = list(
        WorkerScore.objects.filter(project_id=project.pk)
        .order_by("worker__username")
        .values_list("worker_id", "worker__username")
    )
    details = (
        ProjectScore.objects.filter(project_id=project.pk).values_list("details", flat=True).first()
        or {}
    )
    return {
        "project": project,
        "role": role,
        "active": "quality",
        "filter": status_filter,
        "filters": list(FILTERS),
        "actions": list(quality_action_list(project=project, active=FILTERS[status_filter])),
        "action_form": action_form or QualityActionForm(workers=workers),
        "gold_pool": details.get("gold_pool"),
        "candidates": list(gold_candidate_list(project=project)),
        "labels": project.label_values,
    }


@login_required
@require_http_methods(["GET", "POST"])
def quality_actions(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Actions on workers (filter active/undone/all), the owner's own action form, gold pool."""
    project, role = _owner_project(request, pk)
    status_filter = request.GET.get("status", "active")
    if status_filter not in FILTERS:
        status_filter = "active"
    form = None
    if request.method == "POST":
        workers = list(
            WorkerScore.objects.filter(project_id=project.pk).values_list(
                "worker_id", "worker__username"
            )
        )
        form = QualityActionForm(request.POST, workers=workers)
        if form.is_valid():
            try:
                quality_action_create(project=project, by=request.user, **form.cleaned_data)
            except ValidationError as exc:
                for key, errors in exc.message_dict.items():
                    for error in errors:
                        form.add_error(key if key in form.fields else None, error)
            else:
                messages.success(request, "Action recorded.")
                return redirect("quality:actions", pk=project.pk)
    context = _actions_context(project, role, status_filter, form)
    status = 422 if form is not None and form.errors else 200
    return render(request, "quality/actions.html", context, status=status)


@login_required
@require_POST
def quality_action_undo_view(request: HtmxHttpRequest, pk: int, action_id: int) -> HttpResponse:
    """Undo one action; htmx swaps the row, a plain POST returns to the list."""
    project, role = _owner_project(request, pk)
    action = quality_action_undo(
        action=quality_action_get(project=project, action_id=action_id), by=request.user
    )
    if request.htmx:
        action = quality_action_get(project=project, action_id=action.pk)
        return render(
            request,
            "quality/actions.html#action-row",
            {"project": project, "action": action},
        )
    messages.success(request, "Action undone. Scores update shortly.")
    return redirect("quality:actions", pk=project.pk)


@login_required
@require_POST
def gold_promote_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Promote a confident or expert-reviewed item to gold."""
    project, _role = _owner_project(request, pk)
    form = GoldPromoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an item and a label to promote.")
    else:
        try:
            gold_promote(
                project=project, item_id=form.cleaned_data["item"], label=form.cleaned_data["label"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Item {form.cleaned_data['item']} is now a gold question.")
    return redirect("quality:actions", pk=project.pk)
