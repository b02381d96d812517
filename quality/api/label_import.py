"""API: import labels collected elsewhere into a project (owners; multipart `file`): a CSV of
item,worker,label, or a Label Studio JSON export."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
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


class _ImportCounts(serializers.Serializer):
    items_created = serializers.IntegerField()
    items_matched = serializers.IntegerField()
    workers = serializers.IntegerField()
    workers_created = serializers.IntegerField()
    annotations_created = serializers.IntegerField()
    duplicates_skipped = serializers.IntegerField()


class LabelImportOutputSerializer(_ImportCounts):
    rows = serializers.IntegerField()


class LabelStudioImportOutputSerializer(_ImportCounts):
    tasks = serializers.IntegerField()


class _LabelImportApi(APIView):
    """An owner uploads a file; `run` imports it all-or-nothing (its errors become 400s)."""

    parser_classes = (MultiPartParser, FormParser)
    output_serializer: type[serializers.Serializer]

    def run(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def post(self, request: Request, project_id: int) -> Response:
        project, _ = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = LabelImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = self.run(
            project=project, file=data.validated_data["file"], uploaded_by=request.user
        )
        body = self.output_serializer(asdict(result)).data
        return Response(body, status=status.HTTP_201_CREATED)


def _invalid(where: str) -> OpenApiResponse:
    return OpenApiResponse(
        description=f'{{"detail", "code", "fields": {{"file": [{{"{where}", "field", '
        '"message"}]}}; nothing was imported.'
    )


@extend_schema_view(
    post=extend_schema(
        request={"multipart/form-data": LabelImportInputSerializer},
        responses={201: LabelImportOutputSerializer, 400: _invalid("line")},
    )
)
class LabelImportCreateApi(_LabelImportApi):
    """Import an item,worker,label CSV; 400 lists every problem by line and field."""

    output_serializer = LabelImportOutputSerializer

    def run(self, **kwargs: Any) -> Any:
        return label_import_run(**kwargs)


@extend_schema_view(
    post=extend_schema(
        request={"multipart/form-data": LabelImportInputSerializer},
        responses={201: LabelStudioImportOutputSerializer, 400: _invalid("task")},
    )
)
class LabelStudioImportCreateApi(_LabelImportApi):
    """Import a Label Studio JSON export (tasks with annotations); 400 lists every problem by
    task index and field."""

    output_serializer = LabelStudioImportOutputSerializer

    def run(self, **kwargs: Any) -> Any:
        return labelstudio_import(**kwargs)


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
