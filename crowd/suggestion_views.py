"""The owner's page for suggestions (pre-labels): show them at all, and to which pools."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from annotation.access import OWNERS, project_access
from core.http import HtmxHttpRequest
from crowd.suggestions import (
    prediction_count_list,
    suggestion_pool_list,
    suggestion_settings_set,
)

OWNERS_ONLY = "Only the project's owners choose who sees suggestions."


class SuggestionSettingsForm(forms.Form):
    """The project switch and the labeling pools that are shown suggestions."""

    enabled = forms.BooleanField(required=False, label="Show suggestions on this project")
    pools = forms.TypedMultipleChoiceField(coerce=int, required=False, choices=())

    def __init__(self, *args: object, pool_ids: list[int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["pools"].choices = [(pk, str(pk)) for pk in pool_ids]  # type: ignore[attr-defined]


@login_required
@require_http_methods(["GET", "POST"])
def suggestion_settings(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Whether annotators see pre-labels: the project's switch and one per labeling pool."""
    project, role = project_access(
        user=request.user, project_id=pk, roles=OWNERS, denied=OWNERS_ONLY
    )
    links = list(suggestion_pool_list(project=project))
    form = SuggestionSettingsForm(request.POST or None, pool_ids=[link.pool_id for link in links])
    if request.method == "POST" and form.is_valid():
        try:
            suggestion_settings_set(
                project=project,
                enabled=form.cleaned_data["enabled"],
                shown_pool_ids=form.cleaned_data["pools"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Suggestion settings saved.")
            return redirect("crowd:suggestions", pk=project.pk)
    context = {
        "project": project,
        "role": role,
        "links": links,
        "form": form,
        "counts": prediction_count_list(project=project),
    }
    status = 422 if form.errors else 200
    return TemplateResponse(request, "crowd/suggestion_settings.html", context, status=status)
