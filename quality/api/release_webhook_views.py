"""The release webhook API: owners read, set and remove their project's webhook
(GET/PUT/DELETE /api/v1/projects/<id>/releases/webhook/). The secret is write-only."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Project
from quality.releases import project_get_for_releases
from quality.releases.webhooks import (
    release_webhook_delete,
    release_webhook_get,
    release_webhook_set,
    webhook_delivery_list,
)


class WebhookInputSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500)
    secret = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        write_only=True,
        help_text="HMAC key for X-Assay-Signature; blank keeps the current one.",
    )
    active = serializers.BooleanField(required=False, default=True)


class WebhookDeliveryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    release = serializers.IntegerField(source="release_id")
    tag = serializers.CharField(source="release.tag")
    event = serializers.CharField()
    attempt = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    delivered = serializers.BooleanField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()


class WebhookOutputSerializer(serializers.Serializer):
    url = serializers.CharField()
    active = serializers.BooleanField()
    secret_set = serializers.BooleanField()
    deliveries = WebhookDeliveryOutputSerializer(many=True)


def _state(project: Project) -> dict[str, Any]:
    webhook = release_webhook_get(project=project)
    return WebhookOutputSerializer(
        {
            "url": webhook.url if webhook else "",
            "active": bool(webhook and webhook.active),
            "secret_set": bool(webhook and webhook.secret),
            "deliveries": list(webhook_delivery_list(project=project)) if webhook else [],
        }
    ).data


class ReleaseWebhookApi(APIView):
    """The project's release webhook and its latest delivery attempts (owners only)."""

    @extend_schema(responses={200: WebhookOutputSerializer})
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_releases(user=request.user, project_id=project_id, manage=True)
        return Response(_state(project))

    @extend_schema(request=WebhookInputSerializer, responses={200: WebhookOutputSerializer})
    def put(self, request: Request, project_id: int) -> Response:
        project = project_get_for_releases(user=request.user, project_id=project_id, manage=True)
        data = WebhookInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        release_webhook_set(project=project, user=request.user, **data.validated_data)
        return Response(_state(project))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, project_id: int) -> Response:
        project = project_get_for_releases(user=request.user, project_id=project_id, manage=True)
        release_webhook_delete(project=project, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
