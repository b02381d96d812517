"""Expert review API: the queue, one item as a reviewer sees it, and the final decision."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import MANAGERS, project_access
from quality.api.serializers import (
    ReviewDecisionInputSerializer,
    ReviewDecisionOutputSerializer,
    ReviewItemOutputSerializer,
    ReviewQueueItemSerializer,
)
from quality.review import item_review_get, review_decide, review_queue

DENIED = "Only the project's owners and reviewers review items."
ACCESS_RESPONSES = {
    403: OpenApiResponse(description="Annotators may not review."),
    404: OpenApiResponse(description="No such project or item, or you may not see it."),
}


class ReviewQueueApi(GenericAPIView):
    """Items waiting for expert review, lowest confidence first (paginated)."""

    @extend_schema(
        operation_id="review_queue_list",
        responses={200: ReviewQueueItemSerializer(many=True), **ACCESS_RESPONSES},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(
            user=request.user, project_id=project_id, roles=MANAGERS, denied=DENIED
        )
        page = self.paginate_queryset(review_queue(project=project, reviewer=request.user))
        return self.get_paginated_response(ReviewQueueItemSerializer(page, many=True).data)


class ReviewItemApi(APIView):
    """One item with each worker's answer (pseudonymous), the consensus and its posterior."""

    @extend_schema(
        operation_id="review_item_retrieve",
        responses={200: ReviewItemOutputSerializer, **ACCESS_RESPONSES},
    )
    def get(self, request: Request, project_id: int, item_id: int) -> Response:
        project, _role = project_access(
            user=request.user, project_id=project_id, roles=MANAGERS, denied=DENIED
        )
        review = item_review_get(project=project, item_id=item_id)
        return Response(ReviewItemOutputSerializer(review).data)


class ReviewDecisionCreateApi(APIView):
    """Decide an item: accept the consensus, pick a worker's answer, or correct it (final)."""

    @extend_schema(
        operation_id="review_decision_create",
        request=ReviewDecisionInputSerializer,
        responses={
            201: ReviewDecisionOutputSerializer,
            400: OpenApiResponse(description="Unknown action, or a label that does not fit it."),
            **ACCESS_RESPONSES,
        },
    )
    def post(self, request: Request, project_id: int, item_id: int) -> Response:
        project, _role = project_access(
            user=request.user, project_id=project_id, roles=MANAGERS, denied=DENIED
        )
        review = item_review_get(project=project, item_id=item_id)
        data = ReviewDecisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decision = review_decide(item=review.item, reviewer=request.user, **data.validated_data)
        return Response(
            ReviewDecisionOutputSerializer(decision).data, status=status.HTTP_201_CREATED
        )
