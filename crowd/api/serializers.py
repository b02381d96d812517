"""Shapes of the crowd API: what a worker receives and sends."""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import Annotation, ProjectMember
from crowd.models import Assignment


class WorkItemSerializer(serializers.Serializer):
    """The item as a worker sees it: id and data, never the gold answer."""

    id = serializers.IntegerField()
    data = serializers.JSONField()


class AssignmentOutputSerializer(serializers.Serializer):
    assignment = serializers.IntegerField(source="pk")
    item = WorkItemSerializer()
    expires_at = serializers.DateTimeField()


class AnnotationOutputSerializer(serializers.ModelSerializer):
    label = serializers.CharField()
    item = serializers.IntegerField(source="item_id")

    class Meta:
        model = Annotation
        fields = ["id", "item", "label", "duration_ms", "created_at"]


class SubmitInputSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=200)
    duration_ms = serializers.IntegerField(min_value=0, max_value=86_400_000, default=0)


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
