"""HTML pages of a project's label schema: the current labels, changing them, the history.

Owners compose operations one at a time; the pending list travels in a hidden field as JSON, and
each step re-renders the editor (htmx) with the plan: the mapping, the counts and the token the
Confirm button posts. Reviewers see the labels and the history.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import Project, ProjectMember
from annotation.schema import (
    OPERATIONS_MAX,
    SchemaPlan,
    operation_describe,
    schema_change_apply,
    schema_change_plan,
    schema_version_list,
)
from core.http import HtmxHttpRequest

PAGE = "annotation/schema/schema_page.html"
EDITOR = f"{PAGE}#schema-editor"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class OperationForm(forms.Form):
    """One operation on the label set, without JSON."""

    op = forms.ChoiceField(
        label="Change",
        choices=[
            ("rename", "Rename a label"),
            ("add", "Add a label"),
            ("merge", "Merge labels"),
            ("split", "Split a label"),
            ("retire", "Retire a label"),
            ("edit", "Edit a hotkey or colour"),
        ],
    )
    label = forms.CharField(
        required=False, max_length=200, help_text="The label to rename, split, retire or edit."
    )
    labels = forms.CharField(
        required=False, max_length=2000, help_text="Merge: the labels, separated by commas."
    )
    value = forms.CharField(
        required=False,
        max_length=200,
        label="New value",
        help_text="Rename: the new name. Add: the new label. Merge: the label to merge into.",
    )
    values = forms.CharField(
        required=False,
        max_length=2000,
        label="Split into",
        help_text="Split: the new labels, separated by commas.",
    )
    hotkey = forms.CharField(required=False, max_length=1)
    colour = forms.CharField(required=False, max_length=7, help_text="#rrggbb")

    def operation(self) -> dict[str, Any]:
        """The operation in the service's JSON form."""
        data = self.cleaned_data
        kind = data["op"]
        if kind == "rename":
            return {"op": kind, "label": data["label"], "to": data["value"]}
        if kind == "add":
            label = {"value": data["value"], "hotkey": data["hotkey"], "colour": data["colour"]}
            return {"op": kind, "label": label}
        if kind == "merge":
            return {"op": kind, "labels": _split(data["labels"]), "into": data["value"]}
        if kind == "split":
            return {"op": kind, "label": data["label"], "into": _split(data["values"])}
        if kind == "retire":
            return {"op": kind, "label": data["label"]}
        edit = {"op": kind, "label": data["label"]}
        edit.update({name: data[name] for name in ("hotkey", "colour") if data[name]})
        return edit


def _pending(request: HtmxHttpRequest) -> list[dict[str, Any]]:
    """The operations composed so far (hidden field); ValidationError when tampered with."""
    raw = request.POST.get("operations") or "[]"
    try:
        operations = json.loads(raw)
    except ValueError:
        operations = None
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise ValidationError({"operations": ["The pending changes are unreadable; start over."]})
    return operations[:OPERATIONS_MAX]


def _errors(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{key}: {msg}" for key, msgs in exc.message_dict.items() for msg in msgs]
    return list(exc.messages)


def _context(
    project: Project,
    role: str,
    *,
    operations: list[dict[str, Any]],
    plan: SchemaPlan | None = None,
    errors: list[str] | None = None,
    form: OperationForm | None = None,
    note: str = "",
) -> dict[str, Any]:
    is_owner = role == ProjectMember.Role.OWNER
    versions = list(schema_version_list(project))
    return {
        "project": project,
        "role": role,
        "active": "labels",
        "is_owner": is_owner,
        "form": form or OperationForm(),
        "operations": [operation_describe(op) for op in operations],
        "operations_json": json.dumps(operations),
        "plan": plan,
        "errors": errors or [],
        "note": note,
        "working_labels": plan.labels if plan else project.labels,
        "history": [
            (version, [operation_describe(op) for op in version.operations]) for version in versions
        ],
    }


@login_required
@require_GET
def schema_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The label set, its version history, and (for owners) the editor."""
    project, role = project_access(user=request.user, project_id=pk, roles=MANAGERS)
    return render(request, PAGE, _context(project, role, operations=[]))


def _preview_step(
    request: HtmxHttpRequest, project: Project
) -> tuple[list[dict[str, Any]], SchemaPlan | None, list[str], OperationForm]:
    """Apply the requested step (add, remove the last, clear) to the pending operations."""
    form = OperationForm()
    try:
        operations = _pending(request)
    except ValidationError as exc:
        return [], None, _errors(exc), form
    action = request.POST.get("action", "add")
    errors: list[str] = []
    if action == "clear":
        operations = []
    elif action == "remove":
        operations = operations[:-1]
    else:
        form = OperationForm(request.POST)
        if not form.is_valid():
            errors = ["Choose a change and fill in its fields."]
        else:
            try:
                plan = schema_change_plan(
                    project=project, operations=[*operations, form.operation()]
                )
            except ValidationError as exc:
                errors = _errors(exc)
            else:
                return plan.operations, plan, [], OperationForm()
    plan = schema_change_plan(project=project, operations=operations) if operations else None
    return operations, plan, errors, form


@login_required
@require_POST
def schema_preview(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Add an operation to the pending changes (or drop one) and show the resulting plan."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    try:
        operations, plan, errors, form = _preview_step(request, project)
    except ValidationError as exc:  # pending operations no longer fit the label set
        operations, plan, errors, form = [], None, _errors(exc), OperationForm()
    context = _context(project, role, operations=operations, plan=plan, errors=errors, form=form)
    status = 422 if errors else 200
    return render(request, EDITOR if request.htmx else PAGE, context, status=status)


@login_required
@require_POST
def schema_apply(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Confirm the previewed plan: the label set becomes a new schema version."""
    project, role = project_access(user=request.user, project_id=pk, roles=OWNERS)
    note = request.POST.get("note", "")[:2000]
    try:
        operations = _pending(request)
        version = schema_change_apply(
            project=project,
            operations=operations,
            token=request.POST.get("token", ""),
            user=request.user,
            note=note,
        )
    except ValidationError as exc:
        errors = _errors(exc)
        operations = locals().get("operations") or []
        try:
            plan = (
                schema_change_plan(project=project, operations=operations) if operations else None
            )
        except ValidationError:
            operations, plan = [], None
        context = _context(
            project, role, operations=operations, plan=plan, errors=errors, note=note
        )
        return render(request, EDITOR if request.htmx else PAGE, context, status=422)
    messages.success(request, f"Label schema version {version.number} is now in use.")
    url = reverse("schema:schema-page", args=[project.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
