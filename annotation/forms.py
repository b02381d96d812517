"""Forms of the annotation pages. They parse input; annotation.services validates it.

Each task type declares the options the project form offers (`TaskType.option_fields`: name,
kind, default, label); a type without any shows no option fields and keeps the options it has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from annotation.models import Project
from annotation.services import labels_clean
from annotation.task_types import TaskType, task_type_choices, task_types
from annotation.task_types.base import OptionSpec

LABEL_KEY = re.compile(r"^labels\[(\d+)\]$")
FIELD_SEPARATORS = re.compile(r"[,\n]")
DEFAULT_TASK_TYPE = "single_label"
OPTION_PREFIX = "options."  # option fields are named like the service's error keys
OPTIONS_FOR = "options_for"  # hidden input: the type the posted option fields were shown for


# Fields of ProjectForm before and after the task type part (picker, labels, options).
LEADING_FIELDS = ("name", "instructions")


def option_specs(task_type_key: str) -> tuple[OptionSpec, ...]:
    """The options the forms offer for a task type (declared on the type; none if unknown)."""
    found = task_types().get(task_type_key)
    return found.option_fields if found else ()


def option_defaults(task_type_key: str) -> dict[str, Any]:
    """A type's options with every value at its default."""
    return {spec.name: spec.default for spec in option_specs(task_type_key)}


def _option_field(spec: OptionSpec) -> forms.Field:
    common: dict[str, Any] = {"required": False, "label": spec.label, "help_text": spec.help}
    if spec.kind is bool:
        return forms.BooleanField(**common)
    if spec.kind is int:
        bounds = (("min", spec.minimum), ("max", spec.maximum))
        widget = forms.NumberInput(attrs={key: value for key, value in bounds if value is not None})
        return forms.IntegerField(widget=widget, **common)
    if spec.kind is float:
        widget = forms.NumberInput(attrs={"min": spec.minimum or 0, "step": 0.01})
        return forms.FloatField(widget=widget, **common)
    if spec.kind == "choice":
        return forms.ChoiceField(choices=spec.choices, widget=forms.RadioSelect, **common)
    widget = forms.TextInput(attrs={"spellcheck": "false"})
    return forms.CharField(max_length=2000, widget=widget, **common)


def _option_initial(spec: OptionSpec, value: Any) -> Any:
    if spec.kind is list and isinstance(value, list):
        return ", ".join(str(part) for part in value)
    return value


def _option_value(spec: OptionSpec, raw: Any) -> Any:
    """The option's value from its cleaned form field; empty means the default."""
    if spec.kind is bool:
        return bool(raw)
    if spec.kind is list:
        parts = (part.strip() for part in FIELD_SEPARATORS.split(raw or ""))
        return [part for part in parts if part]
    if raw in (None, ""):
        return spec.default
    return raw


def option_summary(task_type_key: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, shown value) for each of a project's options, described ones first."""
    shown: list[tuple[str, str]] = []
    specs = {spec.name: spec for spec in option_specs(task_type_key)}
    for name in [*specs, *(name for name in options if name not in specs)]:
        spec = specs.get(name)
        value = options.get(name, spec.default if spec else None)
        if isinstance(value, bool):
            text = "Yes" if value else "No"
        elif isinstance(value, list):
            text = ", ".join(str(part) for part in value) or "none"
        elif spec is not None and spec.kind == "choice":
            text = dict(spec.choices).get(value, str(value))
        else:
            text = str(value)
        shown.append((spec.label if spec else name, text))
    return shown


def parse_label_line(line: str) -> dict[str, str]:
    """One line of the labels box: "value", "value | hotkey" or "value | hotkey | #colour"
    ("value | #colour" too). Parts are taken from the right, so a value may hold "|"."""
    parts = line.split("|")
    colour = parts.pop().strip() if len(parts) > 1 and parts[-1].strip().startswith("#") else ""
    hotkey = parts.pop().strip() if len(parts) > 1 else ""
    label = {"value": "|".join(parts).strip(), "hotkey": hotkey}
    if colour:
        label["colour"] = colour
    return label


class ProjectForm(forms.Form):
    """A project's settings, its task type and the type's options.

    Labels are typed one per line as "value", "value | hotkey" or "value | hotkey | #colour".
    The fields follow the picked task type: no labels for types that need none, and one field
    per option the type offers (named `options.<name>`, like the service's error keys). With
    `project`, the form edits that project: its type is fixed and shown, not a field.
    """

    name = forms.CharField(max_length=200)
    instructions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown: **bold**, lists, links. Shown to workers above every item.",
    )
    task_type = forms.ChoiceField(
        required=False, choices=(), widget=forms.RadioSelect, label="Task type"
    )
    labels = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text='One label per line: "value", "value | hotkey" or "value | hotkey | #colour" '
        "(hotkey 1-9 or a letter, s is skip; colour like #0072b2, a default when left out).",
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

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        initial: Mapping[str, Any] | None = None,
        project: Project | None = None,
    ) -> None:
        if project is not None:
            initial = {**self.initial_for(project), **(initial or {})}
        super().__init__(data, initial=initial)
        self.project = project
        types = task_types()
        if project is not None:
            key = project.task_type
            del self.fields["task_type"]
        else:
            wanted = (data if data is not None else initial or {}).get("task_type")
            key = wanted if wanted in types else DEFAULT_TASK_TYPE
            picker = self.fields["task_type"]
            assert isinstance(picker, forms.ChoiceField)
            picker.choices = task_type_choices()
            picker.initial = key
        self.task_type_key: str = key
        self.task_type_obj: TaskType | None = types.get(key)
        if self.task_type_obj is not None and not self.task_type_obj.needs_labels:
            del self.fields["labels"]
        for spec in option_specs(key):
            field = _option_field(spec)
            field.initial = _option_initial(spec, spec.default)
            self.fields[OPTION_PREFIX + spec.name] = field

    # --- what the template shows -----------------------------------------------------------

    @property
    def leading_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in LEADING_FIELDS]

    @property
    def trailing_fields(self) -> list[forms.BoundField]:
        skip = {*LEADING_FIELDS, "task_type", "labels"}
        return [
            self[name]
            for name in self.fields
            if name not in skip and not name.startswith(OPTION_PREFIX)
        ]

    @property
    def labels_field(self) -> forms.BoundField | None:
        return self["labels"] if "labels" in self.fields else None

    @property
    def type_field(self) -> forms.BoundField | None:
        return self["task_type"] if "task_type" in self.fields else None

    @property
    def option_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(OPTION_PREFIX)]

    @property
    def type_cards(self) -> list[dict[str, Any]]:
        """The task types to pick from (registry order), with the picked one marked."""
        return [
            {
                "key": key,
                "name": task_type.name,
                "description": task_type.description,
                "checked": key == self.task_type_key,
            }
            for key, task_type in task_types().items()
        ]

    @property
    def label_preview(self) -> list[dict[str, str]]:
        """The labels as they will be stored (default colours filled in), once the form was
        validated; the project's labels on its settings page; empty when they are invalid."""
        if self.is_bound:
            labels = getattr(self, "cleaned_data", {}).get("labels")
        elif self.project is not None:
            labels = self.project.labels
        else:
            labels = None
        if not labels:
            return []
        try:
            return labels_clean(labels)
        except ValidationError:
            return []

    # --- parsing ---------------------------------------------------------------------------

    @classmethod
    def initial_for(cls, project: Project) -> dict[str, Any]:
        """The form's initial values for an existing project."""
        lines = []
        for label in project.labels:
            parts = [label["value"], label.get("hotkey", "")]
            if label.get("colour"):
                parts.append(label["colour"])
            lines.append(" | ".join(part for part in parts if part))
        initial = {
            "name": project.name,
            "instructions": project.instructions,
            "labels": "\n".join(lines),
            "overlap": project.overlap,
            "gold_ratio": project.gold_ratio,
            "reservation_timeout_seconds": project.reservation_timeout_seconds,
            "sensitive_fields": ", ".join(project.sensitive_fields),
        }
        options = project.task_options or {}
        for spec in option_specs(project.task_type):
            value = options.get(spec.name, spec.default)
            initial[OPTION_PREFIX + spec.name] = _option_initial(spec, value)
        return initial

    def clean_task_type(self) -> str:
        return self.cleaned_data["task_type"] or DEFAULT_TASK_TYPE

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
            labels.append(parse_label_line(line))
            self.label_lines.append(number)
        if not labels:
            raise ValidationError("Give at least one label.")
        return labels

    def clean(self) -> dict[str, Any]:
        """Gather the option fields into `task_options` (the services' field).

        Option fields posted for another type than the picked one (a browser without
        JavaScript that changed the type but did not reload the options) are ignored: the
        picked type's defaults apply, and the owner can change them in the settings.
        """
        cleaned = super().clean() or {}
        specs = option_specs(self.task_type_key)
        posted_for = (self.data or {}).get(OPTIONS_FOR)
        stale = posted_for is not None and posted_for != self.task_type_key
        options = {}
        for spec in specs:
            raw = cleaned.pop(OPTION_PREFIX + spec.name, None)
            options[spec.name] = spec.default if stale else _option_value(spec, raw)
        if specs:
            cleaned["task_options"] = options
        return cleaned

    def add_service_errors(self, exc: ValidationError) -> None:
        """Show a service's ValidationError on the matching fields ("labels[2]" → line 3,
        "options.scale_max" → that option's field); others above the form, named."""
        errors = (
            exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
        )
        for key, messages in errors.items():
            field: str | None = key if key in self.fields else None
            prefix = ""
            match = LABEL_KEY.match(key)
            if match and "labels" in self.fields:
                field, index = "labels", int(match.group(1))
                lines = getattr(self, "label_lines", [])
                prefix = f"Line {lines[index]}: " if index < len(lines) else ""
            elif field is None and key.startswith(("options", "task_options")):
                prefix = f"{key}: "
            for message in messages:
                self.add_error(field, f"{prefix}{message}")


class ImportForm(forms.Form):
    file = forms.FileField(
        label="File to import",
        help_text="CSV with a header row naming the task type's fields (text; image; a and b) and "
        'an optional gold column, or JSONL with one object per line: {"text": ..., "gold": '
        "...}. UTF-8. For image projects: a .zip of images, with an optional metadata.csv or "
        "metadata.jsonl naming each image in an image column.",
        widget=forms.FileInput(attrs={"accept": ".csv,.jsonl,.ndjson,.zip"}),
    )
