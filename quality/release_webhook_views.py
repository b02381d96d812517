"""The release webhook page: owners set the URL and secret and see the latest deliveries."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from annotation.selectors import project_role
from core.exceptions import ApplicationError
from core.http import HtmxHttpRequest
from quality.releases import project_get_for_releases
from quality.releases.webhooks import (
    release_webhook_delete,
    release_webhook_get,
    release_webhook_set,
    webhook_delivery_list,
)

TEMPLATE = "quality/release_webhook.html"


class WebhookForm(forms.Form):
    url = forms.CharField(max_length=500, label="Payload URL")
    secret = forms.CharField(
        max_length=200, required=False, widget=forms.PasswordInput, label="Secret"
    )
    active = forms.BooleanField(required=False, initial=True, label="Active")


@login_required
@require_http_methods(["GET", "POST"])
def release_webhook_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Show and change the project's release webhook (owners only)."""
    project = project_get_for_releases(user=request.user, project_id=pk, manage=True)
    webhook = release_webhook_get(project=project)
    if request.method == "POST" and request.POST.get("action") == "delete":
        release_webhook_delete(project=project, user=request.user)
        messages.success(request, "Webhook removed.")
        return redirect("releases:release-webhook", pk=project.pk)
    initial = {"url": webhook.url, "active": webhook.active} if webhook else {"active": True}
    form = WebhookForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            release_webhook_set(project=project, user=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            for field, errors in exc.fields.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
            if not exc.fields:
                form.add_error(None, exc.message)
        else:
            messages.success(request, "Webhook saved.")
            return redirect("releases:release-webhook", pk=project.pk)
    context = {
        "project": project,
        "role": project_role(user=request.user, project=project) or "owner",
        "webhook": webhook,
        "form": form,
        "deliveries": webhook_delivery_list(project=project) if webhook else [],
    }
    return TemplateResponse(request, TEMPLATE, context, status=422 if form.errors else 200)
