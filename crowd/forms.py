"""Forms of the crowd pages: the labeling endpoints' inputs and adding a project member."""

from __future__ import annotations

from typing import Any

from django import forms

from annotation.models import ProjectMember

MAX_IDS = 50  # the page holds two items and rarely has more than a few in flight


def _ids(value: str) -> list[int]:
    raw = [part.strip() for part in value.split(",") if part.strip()]
    if len(raw) > MAX_IDS or not all(part.isdigit() for part in raw):
        raise forms.ValidationError("A comma-separated list of assignment ids.")
    return [int(part) for part in raw]


class LabelSkipForm(forms.Form):
    """What the page sends with a skip: the items it holds, and those whose answer is in flight."""

    held = forms.CharField(required=False, max_length=200)
    pending = forms.CharField(required=False, max_length=200)

    def clean_held(self) -> list[int]:
        return _ids(self.cleaned_data["held"])

    def clean_pending(self) -> list[int]:
        return _ids(self.cleaned_data["pending"])

    def ids(self, name: str) -> list[int]:
        """Parsed ids of `held` or `pending`; none when malformed (the page gets fresh items)."""
        return self.cleaned_data.get(name, []) if hasattr(self, "cleaned_data") else []


class LabelSubmitForm(LabelSkipForm):
    """A submit: the answer and the time on task measured by the page.

    The answer is `value`, a JSON object in the task type's form ({"labels": [...]},
    {"rating": 4}…), checked later by the type; the legacy `label` field stands for
    {"label": label}. `cleaned_data["value"]` is the answer either way.
    """

    value = forms.JSONField(required=False)
    label = forms.CharField(required=False, max_length=200)
    duration_ms = forms.IntegerField(min_value=0, max_value=24 * 3600 * 1000)

    def clean_value(self) -> dict[str, Any] | None:
        value = self.cleaned_data["value"]
        if value is not None and not isinstance(value, dict):
            raise forms.ValidationError('The answer is a JSON object, for example {"label": …}.')
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "value" not in cleaned:  # already reported by clean_value
            return cleaned
        if cleaned["value"] is None:
            if not cleaned.get("label"):
                raise forms.ValidationError("Give the answer as `value` (a JSON object).")
            cleaned["value"] = {"label": cleaned["label"]}
        return cleaned


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label="Username")
    role = forms.ChoiceField(
        choices=ProjectMember.Role.choices, initial=ProjectMember.Role.ANNOTATOR, label="Role"
    )


class WorkerBlockForm(forms.Form):
    """An owner blocks a worker of the project; the reason is shown to the worker."""

    username = forms.CharField(max_length=150, label="Worker's username")
    reason = forms.CharField(max_length=2000, label="Reason", widget=forms.Textarea)
