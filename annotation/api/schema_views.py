"""API of a project's label schema: its versions, previewing a change and confirming it."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import LabelSchemaVersion
from annotation.schema import schema_change_apply, schema_change_plan, schema_version_list

OPERATIONS_HELP = (
    'Applied in order: {"op": "rename", "label", "to"}, {"op": "add", "label": {"value", '
    '"hotkey"?, "colour"?}}, {"op": "merge", "labels": [...], "into"}, {"op": "split", "label", '
    '"into": [...]}, {"op": "retire", "label"}, {"op": "edit", "label", "hotkey"?, "colour"?}.'
)


class SchemaLabelSerializer(serializers.Serializer):
    value = serializers.CharField()
    hotkey = serializers.CharField(allow_blank=True)
    colour = serializers.CharField()


class SchemaVersionOutputSerializer(serializers.ModelSerializer):
    """One label schema version and how it came from the previous one."""

    labels = SchemaLabelSerializer(many=True)
    operations = serializers.ListField(child=serializers.DictField())
    mapping = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        help_text="Old label value -> new value, or null when its answers were set aside.",
    )
    created_by = serializers.CharField(
        source="created_by.username", allow_null=True, default=None, read_only=True
    )

    class Meta:
        model = LabelSchemaVersion
        fields = [
            "number",
            "labels",
            "task_options",
            "operations",
            "mapping",
            "note",
            "migrated_count",
            "superseded_count",
            "created_by",
            "created_at",
        ]


class SchemaPlanOutputSerializer(serializers.Serializer):
    """What confirming the operations would do; post `token` back to confirm."""

    from_version = serializers.IntegerField()
    operations = serializers.ListField(child=serializers.DictField())
    labels = SchemaLabelSerializer(many=True)
    mapping = serializers.DictField(child=serializers.CharField(allow_null=True))
    migrated_count = serializers.IntegerField(help_text="Answers carried over to a new label.")
    superseded_count = serializers.IntegerField(help_text="Answers set aside (relabel).")
    relabel_item_count = serializers.IntegerField(help_text="Items sent back for relabeling.")
    gold_mapped_count = serializers.IntegerField()
    gold_lost_item_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="Gold items retired: their answer is lost."
    )
    token = serializers.CharField()


@extend_schema_serializer(component_name="SchemaPlanInput")
class SchemaPlanInputSerializer(serializers.Serializer):
    operations = serializers.ListField(
        child=serializers.DictField(), allow_empty=False, max_length=100, help_text=OPERATIONS_HELP
    )


@extend_schema_serializer(component_name="SchemaVersionCreateInput")
class SchemaVersionInputSerializer(SchemaPlanInputSerializer):
    token = serializers.CharField(help_text="The token of the plan being confirmed.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class SchemaVersionListCreateApi(GenericAPIView):
    """GET: the label schema versions, newest first (owners and reviewers).
    POST: confirm a previewed change (owners); answers are migrated at once."""

    serializer_class = SchemaVersionInputSerializer  # what OPTIONS describes for POST

    @extend_schema(
        summary="List the label schema versions (owners and reviewers)",
        responses={200: SchemaVersionOutputSerializer(many=True)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=MANAGERS)
        page = self.paginate_queryset(schema_version_list(project))
        return self.get_paginated_response(SchemaVersionOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Confirm a previewed label schema change (owners)",
        request=SchemaVersionInputSerializer,
        responses={201: SchemaVersionOutputSerializer},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = SchemaVersionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = schema_change_apply(
            project=project,
            operations=data.validated_data["operations"],
            token=data.validated_data["token"],
            user=request.user,
            note=data.validated_data.get("note", ""),
        )
        body = SchemaVersionOutputSerializer(version).data
        return Response(body, status=status.HTTP_201_CREATED)


class SchemaPlanApi(APIView):
    """Preview a change of the label set (owners): mapping, counts and the token to confirm."""

    @extend_schema(request=SchemaPlanInputSerializer, responses={200: SchemaPlanOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = SchemaPlanInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = schema_change_plan(project=project, operations=data.validated_data["operations"])
        return Response(SchemaPlanOutputSerializer(plan.as_dict()).data)
