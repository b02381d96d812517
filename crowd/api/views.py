"""The crowd API: getting work, submitting and skipping it, project membership and blocks."""

from __future__ import annotations

from typing import Any

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
    BlockInputSerializer,
    BlockOutputSerializer,
    MemberInputSerializer,
    MemberOutputSerializer,
    SkipOutputSerializer,
    SubmitInputSerializer,
    SubmitOutputSerializer,
)
from crowd.models import Assignment, WorkerBlock
from crowd.selectors import (
    masking_for_worker,
    member_list,
    suggestion_list_for_worker,
    worker_block_get,
    worker_block_list,
)
from crowd.services import (
    assignment_claim_next,
    assignment_skip,
    assignment_submit,
    client_key_compute,
    project_member_add,
    project_worker_block,
    worker_unblock,
)
from crowd.services.members import project_member_remove

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


def _client_key(request: Request) -> str:
    meta = request.META
    return client_key_compute(
        address=meta.get("REMOTE_ADDR", ""), user_agent=meta.get("HTTP_USER_AGENT", "")
    )


def _owned_project(request: Request, project_id: int, denied: str) -> Project:
    return project_access(user=request.user, project_id=project_id, roles=OWNERS, denied=denied)[0]


def _work_context(request: Request, project: Project, claimed: Assignment | None) -> dict[str, Any]:
    """Serializer context for work sent to the caller: masked if they are an external worker,
    with the pre-label the labeling page would show them (none for gold items, nor when the
    project or their pools hide suggestions)."""
    if claimed is None:
        return {"masking": None, "suggestions": {}}
    return {
        "masking": masking_for_worker(worker=request.user, project=project),
        "suggestions": suggestion_list_for_worker(
            worker=request.user, project=project, items=[claimed.item]
        ),
    }


def _wants_next(request: Request) -> bool:
    return request.query_params.get("next", "").lower() in {"1", "true", "yes"}


class CrowdApi(APIView):
    throttle_classes = [FixedWindowThrottle]
    throttle_scope = "crowd"


class ProjectNextApi(CrowdApi):
    """Claim the next item for the calling worker; 204 when nothing is left for them, 403 (code
    `blocked`, with the reason) when they are blocked from the project."""

    @extend_schema(
        request=None,
        responses={
            200: AssignmentOutputSerializer,
            204: OpenApiResponse(description="Nothing left for this worker."),
            403: OpenApiResponse(description="Not a labeler here, or blocked (with the reason)."),
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
        context = _work_context(request, project, claimed)
        return Response(AssignmentOutputSerializer(claimed, context=context).data)


class AssignmentSubmitApi(CrowdApi):
    """Submit an answer (`value`, or the legacy `label`) for an assignment. Repeating a submit
    returns the same annotation."""

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
            value=data.validated_data["value"],
            duration_ms=data.validated_data["duration_ms"],
            client_key=_client_key(request),
            suggestion_id=data.validated_data.get("suggestion"),
        )
        body = {"annotation": annotation}
        if _wants_next(request):
            body["next"] = assignment_claim_next(worker=request.user, project=assignment.project)
        context = _work_context(request, assignment.project, body.get("next"))
        return Response(SubmitOutputSerializer(body, context=context).data)


class AssignmentSkipApi(CrowdApi):
    """Give an item back; the worker will not be offered it again."""

    @extend_schema(request=None, parameters=[NEXT_PARAMETER], responses={200: SkipOutputSerializer})
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = _own_assignment(request, assignment_id)
        skipped = assignment_skip(assignment=assignment, worker=request.user)
        body = {"assignment": skipped.pk, "status": skipped.status}
        if _wants_next(request):
            body["next"] = assignment_claim_next(worker=request.user, project=assignment.project)
        context = _work_context(request, assignment.project, body.get("next"))
        return Response(SkipOutputSerializer(body, context=context).data)


MEMBERS_DENIED = "Only the project's owners manage its members."


class ProjectMemberListApi(APIView):
    """List a project's members, or give an existing user a role (owners only)."""

    def _owned_project(self, request: Request, project_id: int) -> Project:
        return _owned_project(request, project_id, MEMBERS_DENIED)

    @extend_schema(responses={200: MemberOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project = self._owned_project(request, project_id)
        return Response(MemberOutputSerializer(member_list(project=project), many=True).data)

    @extend_schema(request=MemberInputSerializer, responses={201: MemberOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = self._owned_project(request, project_id)
        data = MemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = project_member_add(project=project, actor=request.user, **data.validated_data)
        return Response(MemberOutputSerializer(member).data, status=status.HTTP_201_CREATED)


class ProjectMemberRemoveApi(APIView):
    """Remove a member from the project (owners only); 404 for a user who is not one, 400 for
    the last owner. Their reservations go back to the queue; their annotations stay."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, project_id: int, user_id: int) -> Response:
        project = _owned_project(request, project_id, MEMBERS_DENIED)
        if not member_list(project=project).filter(user_id=user_id).exists():
            raise NotFound("No such member.")
        project_member_remove(project=project, user_id=user_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


BLOCKS_DENIED = "Only the project's owners block workers."


class ProjectBlockListApi(APIView):
    """The project's blocks (active ones; `?all=1` adds lifted ones), or block a worker of the
    project with a reason (owners only). Blocking releases the worker's reservations."""

    @extend_schema(
        parameters=[
            OpenApiParameter("all", OpenApiTypes.BOOL, description="Include lifted blocks.")
        ],
        responses={200: BlockOutputSerializer(many=True)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = _owned_project(request, project_id, BLOCKS_DENIED)
        everything = request.query_params.get("all", "").lower() in {"1", "true", "yes"}
        blocks = worker_block_list(project=project, active=not everything)
        return Response(BlockOutputSerializer(blocks, many=True).data)

    @extend_schema(request=BlockInputSerializer, responses={201: BlockOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = _owned_project(request, project_id, BLOCKS_DENIED)
        data = BlockInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        block = project_worker_block(
            project=project,
            worker_id=data.validated_data.get("worker"),
            username=data.validated_data.get("username"),
            reason=data.validated_data["reason"],
            created_by=request.user,
        )
        return Response(BlockOutputSerializer(block).data, status=status.HTTP_201_CREATED)


class ProjectBlockLiftApi(APIView):
    """Lift one of the project's blocks (owners only); the worker gets work again."""

    @extend_schema(request=None, responses={200: BlockOutputSerializer})
    def post(self, request: Request, project_id: int, block_id: int) -> Response:
        project = _owned_project(request, project_id, BLOCKS_DENIED)
        try:
            block = worker_block_get(project=project, block_id=block_id)
        except WorkerBlock.DoesNotExist:
            raise NotFound() from None
        lifted = worker_unblock(block=block, lifted_by=request.user)
        return Response(BlockOutputSerializer(lifted).data)
