"""HTML page of the built-in model: versions, "train now" and the serving order (owners)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation.models import Project
from core.exceptions import ApplicationError
from core.http import HtmxHttpRequest
from quality.model import (
    MIN_VETTED,
    model_supported,
    model_train_request,
    model_version_list,
    serving_order_set,
    vetted_count,
)
from quality.model.selectors import project_get_for_model

TEMPLATE = "quality/model.html"


def _page(request: HtmxHttpRequest, project: Project, role: str) -> HttpResponse:
    versions = list(model_version_list(project=project)[:50])
    context = {
        "project": project,
        "role": role,
        "versions": versions,
        "latest": next((v for v in versions if v.status == "ready"), None),
        "supported": model_supported(project=project),
        "vetted": vetted_count(project=project),
        "min_vetted": MIN_VETTED,
        "may_manage": role == "owner" or request.user.is_staff,
        "serving_orders": Project._meta.get_field("serving_order").choices,
    }
    return TemplateResponse(request, TEMPLATE, context)


@login_required
@require_GET
def model_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The project's model versions (owners and reviewers) and, for owners, its controls."""
    project, role = project_get_for_model(user=request.user, project_id=pk)
    return _page(request, project, role)


@login_required
@require_POST
def model_train_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Queue a training of the project's model now (owners)."""
    project, _role = project_get_for_model(user=request.user, project_id=pk, manage=True)
    try:
        count = model_train_request(project=project, actor=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Training queued on {count} vetted labels.")
    return redirect(reverse("model:page", args=[project.pk]))


@login_required
@require_POST
def serving_order_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Change the order regular items are served in (owners)."""
    project, _role = project_get_for_model(user=request.user, project_id=pk, manage=True)
    try:
        serving_order_set(project=project, serving_order=request.POST.get("serving_order", ""))
    except ValidationError as error:
        messages.error(request, " ".join(error.message_dict.get("serving_order", [])))
    else:
        messages.success(request, f"Serving order: {project.get_serving_order_display()}.")
    return redirect(reverse("model:page", args=[project.pk]))
