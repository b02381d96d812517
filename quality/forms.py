"""Forms of the quality pages. They parse input; quality.services validates it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import QueryDict

from quality.inference import METHODS
from quality.models import QualityAction, QualityConfig
from quality.spam import ACTIONS, DEFAULT_RULES, OPS, SIGNALS, rules_to_json

RULE_ERROR = re.compile(r"^Rule (\d+): (.*)$", re.DOTALL)
RULE_INPUTS = ("signal", "op", "threshold", "min_evidence", "action")
BLANK_RULE_ROWS = 1
APPROVAL_GOLD_MIN_DEFAULT = QualityConfig._meta.get_field("approval_gold_min").default


class QualityConfigForm(forms.Form):
    """Every QualityConfig setting except the spam rules, which come as rows (RuleRows)."""

    method = forms.ChoiceField(
        choices=list(METHODS.items()),
        label="Consensus method",
        help_text="How answers are combined. Automatic picks the model that fits the data best.",
    )
    confidence_threshold = forms.FloatField(
        label="Confidence threshold",
        widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": 0.01}),
        help_text="Items below this confidence once their overlap is reached get another "
        "annotator (0 to 1).",
    )
    max_overlap = forms.IntegerField(
        label="Maximum overlap",
        widget=forms.NumberInput(attrs={"min": 1, "max": 50}),
        help_text="Annotators an item may get at most, counting the extra ones.",
    )
    review_enabled = forms.BooleanField(
        required=False,
        label="Send items still in doubt at the maximum overlap to expert review",
    )
    gold_rate_onboarding = forms.FloatField(
        label="Gold rate while onboarding",
        widget=forms.NumberInput(attrs={"min": 0, "max": 0.99, "step": 0.01}),
        help_text="Share of gold questions for new workers and for workers whose accuracy dropped.",
    )
    gold_rate_floor = forms.FloatField(
        label="Lowest gold rate",
        widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": 0.01}),
        help_text="The rate proven workers settle at.",
    )
    gold_onboarding_count = forms.IntegerField(
        label="Onboarding gold answers",
        widget=forms.NumberInput(attrs={"min": 1}),
        help_text="Gold answers a worker gives at the onboarding rate.",
    )
    gold_accuracy_bar = forms.FloatField(
        label="Gold accuracy bar",
        widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": 0.01}),
        help_text="Accuracy a worker must prove (95% lower bound) for their gold rate to fall.",
    )
    gold_retire_after = forms.IntegerField(
        label="Retire gold after",
        widget=forms.NumberInput(attrs={"min": 1}),
        help_text="Workers who may see a gold item before it is retired (it may have leaked).",
    )
    reliable_bar = forms.FloatField(
        label="Reliability for doubtful items",
        widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": 0.01}),
        help_text="Workers at or above this reliability are offered doubtful items first.",
    )
    skill_name = forms.CharField(
        required=False,
        max_length=100,
        label="Skill name",
        help_text="Skill that gold answers here update (empty: one skill for this project).",
    )
    approval_gold_bar = forms.FloatField(
        required=False,
        label="Approve workers with gold accuracy at least",
        widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": 0.01}),
        help_text="0 to 1, as the 95% lower bound. Empty: this rule is off.",
    )
    approval_gold_min = forms.IntegerField(
        required=False,
        label="Gold answers needed first",
        widget=forms.NumberInput(attrs={"min": 1}),
        help_text="The gold rule applies to a worker once they gave this many gold answers "
        "(empty: 10).",
    )
    approval_consensus = forms.FloatField(
        required=False,
        label="Approve answers matching a consensus at least this confident",
        widget=forms.NumberInput(attrs={"min": 0, "max": 1, "step": 0.01}),
        help_text="0 to 1. Empty: this rule is off.",
    )
    approval_reject = forms.BooleanField(
        required=False,
        label="Reject answers that clearly fail a rule (otherwise they wait for you)",
        help_text="The worker reads the reason, e.g. “Did not match the confident consensus "
        "(92%)”. You can overturn any automatic decision on the pay page.",
    )

    auto_actions = forms.BooleanField(
        required=False,
        label="Let rules act on their own (otherwise they only flag workers for you)",
    )

    def clean_approval_gold_min(self) -> int:
        value = self.cleaned_data.get("approval_gold_min")
        return APPROVAL_GOLD_MIN_DEFAULT if value is None else value

    @classmethod
    def initial_for(cls, config: QualityConfig) -> dict[str, Any]:
        return {name: getattr(config, name) for name in cls.base_fields}

    def add_service_errors(self, exc: ValidationError) -> None:
        errors = (
            exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
        )
        for key, messages in errors.items():
            if key == "spam_rules":
                continue
            for message in messages:
                self.add_error(key if key in self.fields else None, message)


@dataclass
class RuleRow:
    """One spam rule as typed in the form, with its errors."""

    signal: str = ""
    op: str = "<"
    threshold: str = ""
    min_evidence: str = ""
    action: str = "flag"
    errors: list[str] = field(default_factory=list)

    @property
    def blank(self) -> bool:
        return not (self.signal or self.threshold or self.min_evidence)


class RuleRows:
    """The spam rules edited as table rows: rule_signal, rule_op, ... repeated per row.

    A row with no signal, threshold and evidence is ignored (that is how a rule is removed).
    Service errors "Rule N: ..." go to the row that became rule N.
    """

    signals = list(SIGNALS)
    ops = list(OPS)
    actions = list(ACTIONS.items())
    signal_help = SIGNALS

    def __init__(self, rows: list[RuleRow], *, defaults: bool = False) -> None:
        self.rows = rows
        self.defaults = defaults
        self.errors: list[str] = []

    @classmethod
    def from_config(cls, config: QualityConfig) -> RuleRows:
        stored = config.spam_rules or rules_to_json(DEFAULT_RULES)
        rows = [
            RuleRow(
                signal=str(rule.get("signal", "")),
                op=str(rule.get("op", "<")),
                threshold=f"{rule.get('threshold', '')}",
                min_evidence=f"{rule.get('min_evidence', '')}",
                action=str(rule.get("action", "flag")),
            )
            for rule in stored
        ]
        return cls(
            rows + [RuleRow() for _ in range(BLANK_RULE_ROWS)], defaults=not config.spam_rules
        )

    @classmethod
    def from_post(cls, data: QueryDict) -> RuleRows:
        columns = [data.getlist(f"rule_{name}") for name in RULE_INPUTS]
        count = max((len(column) for column in columns), default=0)
        rows = []
        for index in range(count):
            values = [column[index].strip() if index < len(column) else "" for column in columns]
            rows.append(RuleRow(*values))
        return cls(rows)

    def cleaned(self) -> list[dict[str, Any]]:
        """The non-blank rows as raw rule dicts (numbers still as typed) for rules_clean."""
        self._numbered = [row for row in self.rows if not row.blank]
        return [
            {
                "signal": row.signal,
                "op": row.op,
                "threshold": row.threshold,
                "min_evidence": row.min_evidence,
                "action": row.action,
            }
            for row in self._numbered
        ]

    def add_service_errors(self, exc: ValidationError) -> None:
        errors = exc.message_dict.get("spam_rules", []) if hasattr(exc, "error_dict") else []
        numbered = getattr(self, "_numbered", [])
        for message in errors:
            match = RULE_ERROR.match(message)
            if match and 0 < int(match.group(1)) <= len(numbered):
                numbered[int(match.group(1)) - 1].errors.append(match.group(2))
            else:
                self.errors.append(message)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(row.errors for row in self.rows)


class QualityActionForm(forms.Form):
    """An owner acts on a worker by hand."""

    worker = forms.TypedChoiceField(coerce=int, label="Worker")
    kind = forms.ChoiceField(choices=QualityAction.Kind.choices, label="Action")
    reason = forms.CharField(max_length=200, label="Reason")

    def __init__(self, *args: Any, workers: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["worker"].choices = workers


class GoldPromoteForm(forms.Form):
    item = forms.IntegerField()
    label = forms.CharField(max_length=200)
