"""Shapes of the annotation API shared by several endpoints (inputs live on their views)."""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import ImportJob, Item, Project, ProjectMember


class LabelSerializer(serializers.Serializer):
    """One label: its value, the key that picks it and its colour."""

    value = serializers.CharField(max_length=200)
    hotkey = serializers.CharField(
        max_length=1,
        required=False,
        allow_blank=True,
        help_text="One key: 1-9 or a letter other than s (skip). Default: its position (1-9).",
    )
    colour = serializers.CharField(
        max_length=7,
        required=False,
        allow_blank=True,
        help_text="#rrggbb. Default: a colour-blind-safe colour by position.",
    )


class ProjectOutputSerializer(serializers.ModelSerializer):
    """A project as its members see it, with the caller's role (annotated by the view)."""

    labels = LabelSerializer(many=True)
    task_options = serializers.DictField(
        help_text="The task type's options (scale, whether no answer is allowed...)."
    )
    schema_version = serializers.IntegerField(
        read_only=True, help_text="The label schema version answers are made under now."
    )
    role = serializers.ChoiceField(
        choices=ProjectMember.Role.choices,
        allow_null=True,
        read_only=True,
        help_text="The caller's role on the project; null for staff who are not members.",
    )

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "instructions",
            "task_type",
            "task_options",
            "labels",
            "schema_version",
            "overlap",
            "gold_ratio",
            "reservation_timeout_seconds",
            "sensitive_fields",
            "created_at",
            "role",
        ]


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True)
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    file = serializers.CharField(
        required=False, allow_null=True, help_text="The zip entry the error is about."
    )


class ImportJobOutputSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(help_text="0 to 1; 1 once the import succeeded.")
    errors = ImportErrorSerializer(many=True)

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "project",
            "original_name",
            "format",
            "status",
            "progress",
            "total_rows",
            "processed_rows",
            "created_count",
            "duplicate_count",
            "errors",
            "created_at",
            "finished_at",
        ]


class ItemOutputSerializer(serializers.ModelSerializer):
    """An item as owners and reviewers see it: includes the gold answer."""

    state = serializers.ChoiceField(choices=["open", "in_progress", "complete"])

    class Meta:
        model = Item
        fields = ["id", "data", "gold", "is_gold", "state", "annotation_count", "target"]
