"""Forms of the annotation pages. They parse input; annotation.services validates it."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from annotation.models import Project

LABEL_KEY = re.compile(r"^labels\[(\d+)\]$")
FIELD_SEPARATORS = re.compile(r"[,\n]")


class ProjectForm(forms.Form):
    """Project settings; labels are typed one per line as "value" or "value | hotkey"."""

    name = forms.CharField(max_length=200)
    instructions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown: **bold**, lists, links. Shown to workers above every item.",
    )
    labels = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text='One label per line: "value" or "value | hotkey" (1-9 or a letter; s is skip).',
    )
    overlap = forms.IntegerField(
        initial=3,
        widget=forms.NumberInput(attrs={"min": 1, "max": 50}),
        help_text="How many workers label each item (1 to 50).",
    )
    gold_ratio = forms.FloatField(
        initial=0.1,
        widget=forms.NumberInput(attrs={"min": 0, "max": 0.5, "step": 0.01}),
        help_text="Share of hidden gold questions a worker sees (0 to 0.5).",
    )
    reservation_timeout_seconds = forms.IntegerField(
        initial=600,
        label="Reservation timeout (seconds)",
        widget=forms.NumberInput(attrs={"min": 30}),
        help_text="How long a worker holds an item before it goes back to the pool.",
    )
    sensitive_fields = forms.CharField(
        required=False,
        label="Sensitive fields",
        widget=forms.TextInput(attrs={"spellcheck": "false", "placeholder": "e.g. text, author"}),
        help_text="Item data fields holding personal data, separated by commas. External "
        "workers always get personal data masked; in these fields masking is stricter "
        "(any capitalised name, any long number).",
    )

    @classmethod
    def initial_for(cls, project: Project) -> dict[str, Any]:
        """The form's initial values for an existing project."""
        lines = [
            f"{label['value']} | {label['hotkey']}" if label.get("hotkey") else label["value"]
            for label in project.labels
        ]
        return {
            "name": project.name,
            "instructions": project.instructions,
            "labels": "\n".join(lines),
            "overlap": project.overlap,
            "gold_ratio": project.gold_ratio,
            "reservation_timeout_seconds": project.reservation_timeout_seconds,
            "sensitive_fields": ", ".join(project.sensitive_fields),
        }

    def clean_sensitive_fields(self) -> list[str]:
        names = (
            name.strip() for name in FIELD_SEPARATORS.split(self.cleaned_data["sensitive_fields"])
        )
        return list(dict.fromkeys(name for name in names if name))

    def clean_labels(self) -> list[dict[str, str]]:
        self.label_lines: list[int] = []
        labels = []
        for number, line in enumerate(self.cleaned_data["labels"].splitlines(), start=1):
            if not line.strip():
                continue
            value, sep, hotkey = line.rpartition("|")
            if not sep:
                value, hotkey = hotkey, ""
            labels.append({"value": value.strip(), "hotkey": hotkey.strip()})
            self.label_lines.append(number)
        if not labels:
            raise ValidationError("Give at least one label.")
        return labels

    def add_service_errors(self, exc: ValidationError) -> None:
        """Show a service's ValidationError on the matching fields ("labels[2]" → line 3)."""
        errors = (
            exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
        )
        for key, messages in errors.items():
            field: str | None = key if key in self.fields else None
            prefix = ""
            match = LABEL_KEY.match(key)
            if match:
                field, index = "labels", int(match.group(1))
                lines = getattr(self, "label_lines", [])
                prefix = f"Line {lines[index]}: " if index < len(lines) else ""
            for message in messages:
                self.add_error(field, f"{prefix}{message}")


class ImportForm(forms.Form):
    file = forms.FileField(
        label="File to import",
        help_text="CSV with a header row including a text column (optional gold column), or "
        'JSONL with one object per line: {"text": ..., "gold": ...}. UTF-8.',
        widget=forms.FileInput(attrs={"accept": ".csv,.jsonl,.ndjson"}),
    )
