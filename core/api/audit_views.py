"""API of the audit log: a project's recorded owner and reviewer actions (owners)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.access import OWNERS, project_access
from core.audit import audit_list
from core.models import AuditEvent

DENIED = "Only the project's owners may read its audit log."


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.get_username", default=None, allow_null=True)
    actor_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "actor_id", "action", "target", "details"]
        read_only_fields = fields


class AuditEventListApi(GenericAPIView):
    """The project's audit events, newest first (paginated); `action` takes a code or a
    family ("pay"), `actor` a user id."""

    serializer_class = AuditEventSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("action", OpenApiTypes.STR, description="Code or family."),
            OpenApiParameter("actor", OpenApiTypes.INT, description="User id."),
            OpenApiParameter("page", OpenApiTypes.INT),
        ],
        operation_id="audit_event_list",
        responses={
            200: AuditEventSerializer(many=True),
            400: OpenApiResponse(description="A bad filter (`actor` is not a user id)."),
            403: OpenApiResponse(description="Only owners read the audit log."),
            404: OpenApiResponse(description="No such project, or you may not see it."),
        },
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _ = project_access(
            user=request.user, project_id=project_id, roles=OWNERS, denied=DENIED
        )
        filters = {name: request.query_params.get(name, "") for name in ("action", "actor")}
        page = self.paginate_queryset(audit_list(project, filters))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
