"""Forms of the pay pages (the API validates with its own serializers)."""

from __future__ import annotations

from django import forms

from crowd.models import PayDecision


class PaySettingsForm(forms.Form):
    currency = forms.CharField(min_length=3, max_length=3, initial="USD")
    reward_cents = forms.IntegerField(min_value=0, label="Reward per approved answer (cents)")
    gold_reward_cents = forms.IntegerField(
        min_value=0, required=False, label="Reward per gold answer (cents, optional)"
    )
    fair_pay_floor_cents_per_hour = forms.IntegerField(
        min_value=0, required=False, label="Fair-pay floor (cents per hour, optional)"
    )


class DecisionForm(forms.Form):
    annotation = forms.IntegerField(min_value=1)
    status = forms.ChoiceField(choices=PayDecision.Status.choices)
    reason = forms.CharField(max_length=2000, required=False)


class BonusForm(forms.Form):
    username = forms.CharField(max_length=150, label="Worker")
    amount_cents = forms.IntegerField(min_value=1, label="Amount (cents)")
    note = forms.CharField(max_length=2000, widget=forms.Textarea, label="Note")


class PayoutForm(forms.Form):
    start = forms.DateField(label="From")
    end = forms.DateField(label="To")
    identities = forms.BooleanField(
        required=False, label="Include usernames, emails and external platform ids"
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", "The period ends before it starts.")
        return data
