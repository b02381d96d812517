"""Shapes of the crowd API: what a worker receives and sends."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import Annotation, Item, Prediction, ProjectMember
from crowd.models import Assignment, WorkerBlock


class WorkItemSerializer(serializers.Serializer):
    """The item as a worker sees it: id and data, never the gold answer.

    The context must say `masking` (crowd.privacy.masking_for: None sends the original data),
    so no endpoint can forget it and send personal data to an external worker.
    """

    id = serializers.IntegerField()
    data = serializers.JSONField()
    image_urls = serializers.SerializerMethodField(
        help_text="Where to fetch the item's images (access-checked): {'image': url} for image "
        "items, {'image_a': url, 'image_b': url} for image pairs; empty for texts."
    )

    def get_image_urls(self, instance: Item) -> dict[str, str]:
        data = instance.data if isinstance(instance.data, dict) else {}
        url = reverse("crowd:item-image", args=[instance.project_id, instance.pk])
        urls = {"image": url} if "image" in data else {}
        for side in ("a", "b"):
            if f"image_{side}" in data:
                urls[f"image_{side}"] = f"{url}?side={side}"
        return urls

    def to_representation(self, instance: Item) -> dict[str, Any]:
        if "masking" not in self.context:
            raise ImproperlyConfigured("WorkItemSerializer needs 'masking' in its context.")
        shown = super().to_representation(instance)
        masking = self.context["masking"]
        if masking is not None:
            shown["data"] = masking.apply(shown["data"])
        return shown


class SuggestionOutputSerializer(serializers.Serializer):
    """A pre-label shown with the item: the same fields the labeling page gives its widget."""

    id = serializers.IntegerField(help_text="Send it back as the submit's `suggestion`.")
    value = serializers.JSONField(help_text="The proposed answer, in the task type's form.")
    source = serializers.ChoiceField(choices=Prediction.Source.choices)
    source_label = serializers.CharField(source="get_source_display")
    model_name = serializers.CharField()
    model_version = serializers.CharField()


class AssignmentOutputSerializer(serializers.Serializer):
    """A claimed item, with the pre-label the labeling page would show the worker, if any."""

    # The context must say `suggestions` (item id -> the Prediction the worker is shown:
    # crowd.selectors.suggestion_list_for_worker), like the item's `masking`, so no endpoint can
    # forget the decision and show a pre-label the labeling page would hide.

    assignment = serializers.IntegerField(source="pk")
    item = WorkItemSerializer()
    expires_at = serializers.DateTimeField()
    suggestion = serializers.SerializerMethodField(
        help_text="The pre-label shown with the item, or null: none for gold items, nor when "
        "the project or the worker's pools hide suggestions."
    )

    @extend_schema_field(SuggestionOutputSerializer(allow_null=True))
    def get_suggestion(self, assignment: Assignment) -> dict[str, Any] | None:
        if "suggestions" not in self.context:
            raise ImproperlyConfigured(
                "AssignmentOutputSerializer needs 'suggestions' in its context."
            )
        prediction = self.context["suggestions"].get(assignment.item_id)
        return None if prediction is None else SuggestionOutputSerializer(prediction).data


class AnnotationOutputSerializer(serializers.ModelSerializer):
    """A stored answer: `value` in its task type's form; `label` kept for single-label clients."""

    label = serializers.CharField(allow_null=True)
    item = serializers.IntegerField(source="item_id")
    value = serializers.JSONField()

    class Meta:
        model = Annotation
        fields = ["id", "item", "value", "label", "duration_ms", "created_at"]


class SubmitInputSerializer(serializers.Serializer):
    """An answer: `value`, a JSON object in the project's task type form ({"labels": [...]},
    {"rating": 4}…), or the legacy `label` (single label), which stands for {"label": label}.
    The task type checks the value itself when it is stored."""

    value = serializers.JSONField(required=False)
    label = serializers.CharField(max_length=200, required=False)
    duration_ms = serializers.IntegerField(min_value=0, max_value=86_400_000, default=0)
    suggestion = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="The prediction (pre-label) shown with the item, if any; recorded only when "
        "it belongs to the item and the worker is shown suggestions, otherwise ignored.",
    )

    def validate_value(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError('The answer is a JSON object, e.g. {"label": "…"}.')
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "value" not in attrs:
            if "label" not in attrs:
                raise serializers.ValidationError(
                    {"value": ["Give the answer as `value` (a JSON object)."]}
                )
            attrs["value"] = {"label": attrs["label"]}
        return attrs


class SubmitOutputSerializer(serializers.Serializer):
    annotation = AnnotationOutputSerializer()
    next = AssignmentOutputSerializer(allow_null=True, required=False)


class SkipOutputSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Assignment.Status.choices)
    next = AssignmentOutputSerializer(allow_null=True, required=False)


class MemberInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=ProjectMember.Role.choices)


class MemberOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()
    created_at = serializers.DateTimeField()


class BlockInputSerializer(serializers.Serializer):
    """Who to block (by user id or username) and why; the reason is shown to the worker."""

    worker = serializers.IntegerField(required=False, min_value=1)
    username = serializers.CharField(max_length=150, required=False)
    reason = serializers.CharField(max_length=2000)

    def validate(self, attrs: dict) -> dict:
        if ("worker" in attrs) == ("username" in attrs):
            raise serializers.ValidationError({"worker": ["Give either worker or username."]})
        return attrs


class BlockOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    worker = serializers.IntegerField(source="worker_id")
    username = serializers.CharField(source="worker.username")
    scope = serializers.SerializerMethodField()
    pool = serializers.IntegerField(source="pool_id", allow_null=True)
    reason = serializers.CharField()
    source = serializers.ChoiceField(choices=WorkerBlock.Source.choices)
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    lifted_at = serializers.DateTimeField(allow_null=True)
    lifted_by = serializers.CharField(source="lifted_by.username", allow_null=True, default=None)
    active = serializers.BooleanField(source="is_active")

    def get_scope(self, block: WorkerBlock) -> str:
        return "project" if block.project_id is not None else "pool"
