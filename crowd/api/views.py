"""The crowd API: getting work, submitting and skipping it, and project membership."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import OWNERS, project_access
from annotation.models import Project
from core.api.throttling import FixedWindowThrottle
from core.exceptions import NotAllowedError
from crowd.api.serializers import (
    AssignmentOutputSerializer,
    MemberInputSerializer,
    MemberOutputSerializer,
    SkipOutputSerializer,
    SubmitInputSerializer,
    SubmitOutputSerializer,
)
from crowd.models import Assignment
from crowd.selectors import member_list
from crowd.services import (
    assignment_claim_next,
    assignment_skip,
    assignment_submit,
    project_member_add,
)

NEXT_PARAMETER = OpenApiParameter(
    "next",
    OpenApiTypes.BOOL,
    description="Also claim the next item and return it as `next` (one round trip).",
)


def _project_for(request: Request, project_id: int) -> Project:
    return project_access(user=request.user, project_id=project_id)[0]


def _own_assignment(request: Request, assignment_id: int) -> Assignment:
    return get_object_or_404(
        Assignment.objects.select_related("project"), pk=assignment_id, worker_id=request.user.pk
    )


def _wants_next(request: Request) -> bool:
    return request.query_params.get("next", "").lower() in {"1", "true", "yes"}


class CrowdApi(APIView):
    throttle_classes = [FixedWindowThrottle]
    throttle_scope = "crowd"


class ProjectNextApi(CrowdApi):
    """Claim the next item for the calling worker; 204 when nothing is left for them."""

    @extend_schema(
        request=None,
        responses={
            200: AssignmentOutputSerializer,
            204: OpenApiResponse(description="Nothing left for this worker."),
        },
    )
    def post(self, request: Request, project_id: int) -> Response:
        # The claim checks pool membership inside its own query, so the hot path loads the
        # project by id alone; 404 (can't see it) versus 403 (no labeling role) is sorted out
        # only when the claim refuses.
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            raise NotFound()
        try:
            claimed = assignment_claim_next(worker=request.user, project=project)
        except NotAllowedError:
            _project_for(request, project_id)
            raise
        if claimed is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AssignmentOutputSerializer(claimed).data)


class AssignmentSubmitApi(CrowdApi):
    """Submit a label for an assignment. Repeating a submit returns the same annotation."""

    @extend_schema(
        request=SubmitInputSerializer,
        parameters=[NEXT_PARAMETER],
        responses={200: SubmitOutputSerializer},
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = _own_assignment(request, assignment_id)
        data = SubmitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotation = assignment_submit(
            assignment=assignment,
            worker=request.user,
            value={"label": data.validated_data["label"]},
            duration_ms=data.validated_data["duration_ms"],
        )
        body = {"annotation": annotation}
        if _wants_next(request):
            body["next"] = assignment_claim_next(worker=request.user, project=assignment.project)
        return Response(SubmitOutputSerializer(body).data)


class AssignmentSkipApi(CrowdApi):
    """Give an item back; the worker will not be offered it again."""

    @extend_schema(request=None, parameters=[NEXT_PARAMETER], responses={200: SkipOutputSerializer})
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = _own_assignment(request, assignment_id)
        skipped = assignment_skip(assignment=assignment, worker=request.user)
        body = {"assignment": skipped.pk, "status": skipped.status}
        if _wants_next(request):
            body["next"] = assignment_claim_next(worker=request.user, project=assignment.project)
        return Response(SkipOutputSerializer(body).data)


class ProjectMemberListApi(APIView):
    """List a project's members, or give an existing user a role (owners only)."""

    def _owned_project(self, request: Request, project_id: int) -> Project:
        return project_access(
            user=request.user,
            project_id=project_id,
            roles=OWNERS,
            denied="Only the project's owners manage its members.",
        )[0]

    @extend_schema(responses={200: MemberOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project = self._owned_project(request, project_id)
        return Response(MemberOutputSerializer(member_list(project=project), many=True).data)

    @extend_schema(request=MemberInputSerializer, responses={201: MemberOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = self._owned_project(request, project_id)
        data = MemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = project_member_add(project=project, **data.validated_data)
        return Response(MemberOutputSerializer(member).data, status=status.HTTP_201_CREATED)
