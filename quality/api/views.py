"""Quality API: agreement, worker scores and progress of a project."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import project_access
from quality.api.serializers import ProjectQualityOutputSerializer
from quality.selectors import QUALITY_ROLES, quality_summary_get


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
        project, _role = project_access(
            user=request.user,
            project_id=pk,
            roles=QUALITY_ROLES,
            denied="Only the project's owners and reviewers see its quality.",
        )
        summary = quality_summary_get(project=project, lowest_items=0)
        return Response(self.OutputSerializer(summary).data)
