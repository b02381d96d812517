"""The release API: list and create a project's versions, read one, download its files."""

from __future__ import annotations

from types import SimpleNamespace

from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from quality.api.release_serializers import (
    ReleaseCreateInputSerializer,
    ReleaseDetailOutputSerializer,
    ReleaseOutputSerializer,
)
from quality.releases import (
    project_get_for_releases,
    release_create,
    release_formats,
    release_get_for_user,
    release_list_for_project,
)
from quality.releases.delivery import release_download_response

FORMAT_PARAMETER = OpenApiParameter(
    "format", OpenApiTypes.STR, enum=release_formats(), required=True, description="File format."
)


class ReleaseListApi(APIView):
    """List a project's releases (owners and reviewers) or create the next one (owners)."""

    @extend_schema(responses={200: ReleaseOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_releases(user=request.user, project_id=project_id)
        releases = release_list_for_project(project=project)
        return Response(ReleaseOutputSerializer(releases, many=True).data)

    @extend_schema(
        request=ReleaseCreateInputSerializer, responses={201: ReleaseDetailOutputSerializer}
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_releases(user=request.user, project_id=project_id, manage=True)
        data = ReleaseCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        release = release_create(project=project, user=request.user, **data.validated_data)
        release = release_get_for_user(user=request.user, release_id=release.pk)
        return Response(ReleaseDetailOutputSerializer(release).data, status=status.HTTP_201_CREATED)


class ReleaseDetailApi(APIView):
    """One release with its manifest, build progress and files."""

    @extend_schema(responses={200: ReleaseDetailOutputSerializer})
    def get(self, request: Request, release_id: int) -> Response:
        release = release_get_for_user(user=request.user, release_id=release_id)
        return Response(ReleaseDetailOutputSerializer(release).data)


class _FormatIsNotARenderer(DefaultContentNegotiation):
    """`?format=` names the file to download here, not DRF's renderer (URL_FORMAT_OVERRIDE)."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class ReleaseDownloadApi(APIView):
    """Stream a ready release's file after verifying its checksum (409 while building); one
    HTTP byte range per request (206/416), or a 302 to a signed URL with object storage."""

    content_negotiation_class = _FormatIsNotARenderer

    @extend_schema(
        parameters=[FORMAT_PARAMETER],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            (206, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The byte range asked for in Range."
            ),
            302: OpenApiResponse(description="Redirect to a short-lived signed storage URL."),
            400: OpenApiResponse(description="Unknown format."),
            409: OpenApiResponse(description="The release is not ready."),
            416: OpenApiResponse(description="The Range lies outside the file."),
            500: OpenApiResponse(description="The stored file failed its checksum."),
        },
    )
    def get(self, request: Request, release_id: int) -> HttpResponseBase:
        release = release_get_for_user(user=request.user, release_id=release_id)
        return release_download_response(
            release=release,
            fmt=request.query_params.get("format", ""),
            range_header=request.headers.get("Range"),
            actor=request.user,
            if_range=request.headers.get("If-Range"),
        )
