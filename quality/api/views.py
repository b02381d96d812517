"""Quality API: agreement, worker scores and progress of a project."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from quality.api.serializers import ProjectQualityOutputSerializer
from quality.selectors import QUALITY_ROLES, quality_project_access, quality_summary_get


class ProjectQualityApi(APIView):
    """Agreement coefficients, worker scores and progress of one project."""

    OutputSerializer = ProjectQualityOutputSerializer

    @extend_schema(
        operation_id="project_quality_retrieve",
        summary="Quality of a project (owners and reviewers)",
        responses={
            200: ProjectQualityOutputSerializer,
            403: OpenApiResponse(description="Annotators may not read quality results."),
            404: OpenApiResponse(description="No such project, or you may not see it."),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        project, role = quality_project_access(user=request.user, project_id=pk)
        if project is None:
            raise Http404("No such project.")
        if role not in QUALITY_ROLES:
            raise PermissionDenied("Only the project's owners and reviewers see its quality.")
        summary = quality_summary_get(project=project, lowest_items=0)
        return Response(self.OutputSerializer(summary).data)
