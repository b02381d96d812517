"""API: import labels collected elsewhere into a project (owners; multipart `file`): a CSV of
item,worker,label, or a Label Studio JSON export."""

from __future__ import annotations

from dataclasses import asdict

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import OWNERS, project_access
from quality.label_import import label_import_run
from quality.labelstudio import labelstudio_import


class LabelImportInputSerializer(serializers.Serializer):
    file = serializers.FileField()


class LabelImportOutputSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    items_created = serializers.IntegerField()
    items_matched = serializers.IntegerField()
    workers = serializers.IntegerField()
    workers_created = serializers.IntegerField()
    annotations_created = serializers.IntegerField()
    duplicates_skipped = serializers.IntegerField()


class LabelImportCreateApi(APIView):
    """Import an item,worker,label CSV; 400 lists every problem by line and field."""

    parser_classes = (MultiPartParser, FormParser)

    @extend_schema(
        request={"multipart/form-data": LabelImportInputSerializer},
        responses={
            201: LabelImportOutputSerializer,
            400: OpenApiResponse(
                description='{"detail", "code", "fields": {"file": [{"line", "field", '
                '"message"}]}}; nothing was imported.'
            ),
        },
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = LabelImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = label_import_run(
            project=project, file=data.validated_data["file"], uploaded_by=request.user
        )
        body = LabelImportOutputSerializer(asdict(result)).data
        return Response(body, status=status.HTTP_201_CREATED)


class LabelStudioImportOutputSerializer(serializers.Serializer):
    tasks = serializers.IntegerField()
    items_created = serializers.IntegerField()
    items_matched = serializers.IntegerField()
    workers = serializers.IntegerField()
    workers_created = serializers.IntegerField()
    annotations_created = serializers.IntegerField()
    duplicates_skipped = serializers.IntegerField()


class LabelStudioImportCreateApi(APIView):
    """Import a Label Studio JSON export (tasks with annotations); 400 lists every problem by
    task index and field."""

    parser_classes = (MultiPartParser, FormParser)

    @extend_schema(
        request={"multipart/form-data": LabelImportInputSerializer},
        responses={
            201: LabelStudioImportOutputSerializer,
            400: OpenApiResponse(
                description='{"detail", "code", "fields": {"file": [{"task", "field", '
                '"message"}]}}; nothing was imported.'
            ),
        },
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = LabelImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = labelstudio_import(
            project=project, file=data.validated_data["file"], uploaded_by=request.user
        )
        body = LabelStudioImportOutputSerializer(asdict(result)).data
        return Response(body, status=status.HTTP_201_CREATED)


# Mounted from config/api_urls.py with include("quality.api.label_import").
urlpatterns = [
    path(
        "projects/<int:project_id>/label-imports/",
        LabelImportCreateApi.as_view(),
        name="label-import-create",
    ),
    path(
        "projects/<int:project_id>/label-imports/labelstudio/",
        LabelStudioImportCreateApi.as_view(),
        name="label-import-labelstudio-create",
    ),
]
