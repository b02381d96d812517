"""HTML page of labeling rules: owners add, edit, switch and delete rules and run them;
reviewers read the rules and their stats."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING, HttpResponseClientRedirect

from annotation.models import Project
from core.http import HtmxHttpRequest
from quality.models import LabelingRule
from quality.rules.kinds import OPERATORS
from quality.rules.services import (
    project_get_for_rules,
    rule_create,
    rule_delete,
    rule_kinds_for,
    rule_labels_for,
    rule_list_for_project,
    rule_update,
    rules_run_request,
    rules_run_state,
    rules_supported,
)

TEMPLATE = "quality/rules.html"
CONFIG_FIELDS = ("field", "keywords", "pattern", "ignore_case", "operator", "value")


class RuleForm(forms.Form):
    """A rule as form fields; `rule_fields()` turns them into the service's name/kind/config."""

    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField()
    label = forms.ChoiceField()
    field = forms.CharField(
        max_length=100, required=False, help_text="Item data field (default: text)."
    )
    keywords = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="One per line."
    )
    pattern = forms.CharField(max_length=1000, required=False, label="Regular expression")
    ignore_case = forms.BooleanField(required=False, label="Ignore case")
    operator = forms.ChoiceField(
        required=False, choices=[("", "—"), *((op, op.replace("_", " ")) for op in OPERATORS)]
    )
    value = forms.CharField(
        max_length=1000, required=False, help_text="For “in”: one value per line."
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = rule_kinds_for(project)
        self.fields["label"].choices = [(v, v) for v in rule_labels_for(project)]

    def rule_fields(self) -> dict[str, Any]:
        """name, kind, label and the config of the chosen kind."""
        data = self.cleaned_data
        kind = data["kind"]
        lines = [line.strip() for line in data["keywords"].splitlines() if line.strip()]
        if kind == "field":
            value: Any = data["value"]
            if data["operator"] == "in":
                value = [line.strip() for line in value.splitlines() if line.strip()]
            config: dict[str, Any] = {
                "field": data["field"].strip(),
                "operator": data["operator"],
                "value": value,
            }
        elif kind == "span_pattern" and not data["pattern"]:
            config = {"keywords": lines}
        elif kind == "span_pattern":
            config = {"pattern": data["pattern"], "ignore_case": data["ignore_case"]}
        elif kind == "keywords":
            config = {"keywords": lines, "field": data["field"].strip() or "text"}
        else:
            config = {
                "pattern": data["pattern"],
                "field": data["field"].strip() or "text",
                "ignore_case": data["ignore_case"],
            }
        return {"name": data["name"], "kind": kind, "label": data["label"], "config": config}

    def service_errors_add(self, error: ValidationError) -> None:
        """Show the service's field errors (`config.keywords[2]`) on the form's fields."""
        for key, messages in error.message_dict.items():
            name = key.removeprefix("config.").split("[")[0].split(".")[0]
            target = name if name in self.fields else None
            for message in messages:
                prefix = "" if target or key == "__all__" else f"{key}: "
                self.add_error(target, f"{prefix}{message}")


def _initial(rule: LabelingRule) -> dict[str, Any]:
    config = rule.config or {}
    value = config.get("value", "")
    return {
        "name": rule.name,
        "kind": rule.kind,
        "label": rule.label,
        "field": config.get("field", ""),
        "keywords": "\n".join(config.get("keywords", [])),
        "pattern": config.get("pattern", ""),
        "ignore_case": config.get("ignore_case", False),
        "operator": config.get("operator", ""),
        "value": "\n".join(map(str, value)) if isinstance(value, list) else value,
    }


def _context(request: HtmxHttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    role = getattr(project, "role", None) or "owner"  # staff without a role act as owners
    return {
        "project": project,
        "role": role,
        "may_manage": role == "owner" or request.user.is_staff,
        "supported": rules_supported(project),
        "rules": rule_list_for_project(project=project),
        "run": rules_run_state(project=project),
        **extra,
    }


def _save(
    request: HtmxHttpRequest, project: Project, form: RuleForm, save: Callable[..., Any]
) -> HttpResponse | None:
    """Run `save(**fields)` when the form is valid: a redirect, or None with errors on `form`."""
    if not form.is_valid():
        return None
    try:
        save(**form.rule_fields())
    except ValidationError as exc:
        form.service_errors_add(exc)
        return None
    return _back(request, project.pk)


@login_required
@require_http_methods(["GET", "POST"])
def rule_list(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The rules with their stats and run state (htmx polls the run panel); owners add rules."""
    project = project_get_for_rules(
        user=request.user, project_id=pk, manage=request.method == "POST"
    )
    form = RuleForm(request.POST or None, project=project)
    if request.method == "POST":
        create = partial(rule_create, project=project, user=request.user)
        response = _save(request, project, form, create)
        if response is not None:
            return response
        return TemplateResponse(
            request, f"{TEMPLATE}#rule-form", _context(request, project, form=form), status=422
        )
    context = _context(request, project, form=form)
    if request.htmx:
        response = TemplateResponse(request, f"{TEMPLATE}#rules-run", context)
        if not context["run"]["running"]:
            response.status_code = HTMX_STOP_POLLING
        return response
    return TemplateResponse(request, TEMPLATE, context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request: HtmxHttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    """Owners edit one rule: the form (htmx: in place of the add form), saved with field errors."""
    project = project_get_for_rules(user=request.user, project_id=pk, manage=True)
    rule = get_object_or_404(rule_list_for_project(project=project), pk=rule_pk)
    form = RuleForm(request.POST or None, project=project, initial=_initial(rule))
    status = 200
    if request.method == "POST":
        response = _save(request, project, form, partial(rule_update, rule=rule))
        if response is not None:
            return response
        status = 422
    context = _context(request, project, form=form, editing=rule)
    template = f"{TEMPLATE}#rule-form" if request.htmx else TEMPLATE
    return TemplateResponse(request, template, context, status=status)


def _back(request: HtmxHttpRequest, project_pk: int) -> HttpResponse:
    url = reverse("rules:rule-list", args=[project_pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_POST
def rule_active(request: HtmxHttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    """Owners switch a rule on or off (queues a run)."""
    project = project_get_for_rules(user=request.user, project_id=pk, manage=True)
    rule = get_object_or_404(rule_list_for_project(project=project), pk=rule_pk)
    rule_update(rule=rule, active=not rule.active, actor=request.user)
    return _back(request, project.pk)


@login_required
@require_POST
def rule_remove(request: HtmxHttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    """Owners delete a rule (queues a run)."""
    project = project_get_for_rules(user=request.user, project_id=pk, manage=True)
    rule = get_object_or_404(rule_list_for_project(project=project), pk=rule_pk)
    rule_delete(rule=rule, actor=request.user)
    return _back(request, project.pk)


@login_required
@require_POST
def rule_run(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Owners queue a run of the active rules."""
    project = project_get_for_rules(user=request.user, project_id=pk, manage=True)
    rules_run_request(project=project)
    return _back(request, project.pk)
