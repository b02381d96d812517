"""Quality API for owners: the project's quality config, actions on workers (list, act by
hand, undo) and promoting items to gold."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import OWNERS, project_access
from annotation.models import Project
from quality.inference import METHODS
from quality.models import QualityAction, QualityConfig
from quality.services import (
    gold_promote,
    quality_action_create,
    quality_action_get,
    quality_action_list,
    quality_action_undo,
    quality_config_get,
    quality_config_update,
)
from quality.services.actions import CONFIG_FIELDS
from quality.spam import ACTIONS, OPS, SIGNALS

DENIED = "Only the project's owners may manage its quality rules."
FILTERS = {"active": True, "undone": False, "all": None}
NOT_FOUND = OpenApiResponse(description="No such project, or you may not see it.")
FORBIDDEN = OpenApiResponse(description="Only owners.")


def _owner_project(request: Request, pk: int) -> Project:
    project, _ = project_access(user=request.user, project_id=pk, roles=OWNERS, denied=DENIED)
    return project


class SpamRuleSerializer(serializers.Serializer):
    signal = serializers.ChoiceField(choices=list(SIGNALS))
    op = serializers.ChoiceField(choices=list(OPS))
    threshold = serializers.FloatField()
    min_evidence = serializers.IntegerField(min_value=0)
    action = serializers.ChoiceField(choices=list(ACTIONS))


class QualityConfigSerializer(serializers.ModelSerializer):
    """Output of the config; `spam_rules` empty means the default rules apply."""

    class Meta:
        model = QualityConfig
        fields = [*CONFIG_FIELDS, "updated_at"]
        read_only_fields = fields


class QualityConfigInputSerializer(serializers.Serializer):
    """Any subset of the settings; the service validates values and rules (errors per rule)."""

    method = serializers.ChoiceField(choices=list(METHODS), required=False)
    confidence_threshold = serializers.FloatField(required=False)
    max_overlap = serializers.IntegerField(required=False)
    review_enabled = serializers.BooleanField(required=False)
    gold_rate_onboarding = serializers.FloatField(required=False)
    gold_rate_floor = serializers.FloatField(required=False)
    gold_onboarding_count = serializers.IntegerField(required=False)
    gold_accuracy_bar = serializers.FloatField(required=False)
    gold_retire_after = serializers.IntegerField(required=False)
    reliable_bar = serializers.FloatField(required=False)
    skill_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    spam_rules = serializers.JSONField(
        required=False,
        help_text="List of {signal, op, threshold, min_evidence, action}; [] for the defaults.",
    )
    auto_actions = serializers.BooleanField(required=False)
    approval_gold_bar = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Approve answers of workers whose gold accuracy (95% lower bound) is at "
        "least this; null turns the rule off.",
    )
    approval_gold_min = serializers.IntegerField(
        required=False, help_text="Gold answers a worker needs before the gold rule applies."
    )
    approval_consensus = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Approve answers agreeing with a consensus at least this confident; null: off.",
    )
    approval_reject = serializers.BooleanField(
        required=False, help_text="Reject answers that clearly fail an enabled rule."
    )


class QualityConfigApi(APIView):
    """The project's quality configuration (owners only)."""

    @extend_schema(
        operation_id="project_quality_config_retrieve",
        responses={200: QualityConfigSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def get(self, request: Request, pk: int) -> Response:
        config = quality_config_get(project=_owner_project(request, pk))
        return Response(QualityConfigSerializer(config).data)

    @extend_schema(
        operation_id="project_quality_config_update",
        request=QualityConfigInputSerializer,
        responses={200: QualityConfigSerializer, 400: OpenApiResponse(description="Invalid.")},
    )
    def put(self, request: Request, pk: int) -> Response:
        project = _owner_project(request, pk)
        data = QualityConfigInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        config = quality_config_update(project=project, actor=request.user, **data.validated_data)
        return Response(QualityConfigSerializer(config).data)


class QualityActionSerializer(serializers.ModelSerializer):
    worker_id = serializers.IntegerField()
    worker = serializers.CharField(source="worker.username")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    undone_by = serializers.CharField(source="undone_by.username", allow_null=True, default=None)
    active = serializers.BooleanField(source="is_active")

    class Meta:
        model = QualityAction
        fields = [
            "id",
            "worker_id",
            "worker",
            "kind",
            "source",
            "rule",
            "evidence",
            "block",
            "active",
            "created_at",
            "created_by",
            "undone_at",
            "undone_by",
        ]
        read_only_fields = fields


class QualityActionInputSerializer(serializers.Serializer):
    worker = serializers.IntegerField(help_text="User id of the worker.")
    kind = serializers.ChoiceField(choices=QualityAction.Kind.choices)
    reason = serializers.CharField(max_length=200)


class QualityActionListCreateApi(APIView):
    """Actions the rules and owners took on the project's workers."""

    @extend_schema(
        operation_id="project_quality_actions_list",
        parameters=[OpenApiParameter("status", str, enum=list(FILTERS), default="all")],
        responses={200: QualityActionSerializer(many=True), 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def get(self, request: Request, pk: int) -> Response:
        project = _owner_project(request, pk)
        wanted = FILTERS.get(request.query_params.get("status", "all"))
        actions = quality_action_list(project=project, active=wanted)
        return Response(QualityActionSerializer(actions, many=True).data)

    @extend_schema(
        operation_id="project_quality_actions_create",
        request=QualityActionInputSerializer,
        responses={201: QualityActionSerializer, 400: OpenApiResponse(description="Invalid.")},
    )
    def post(self, request: Request, pk: int) -> Response:
        project = _owner_project(request, pk)
        data = QualityActionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        action = quality_action_create(project=project, by=request.user, **data.validated_data)
        action = quality_action_get(project=project, action_id=action.pk)
        return Response(QualityActionSerializer(action).data, status=status.HTTP_201_CREATED)


class QualityActionUndoApi(APIView):
    """Undo an action: lift its block, restore the worker's labels (idempotent)."""

    @extend_schema(
        operation_id="project_quality_actions_undo",
        request=None,
        responses={200: QualityActionSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request: Request, pk: int, action_id: int) -> Response:
        project = _owner_project(request, pk)
        action = quality_action_get(project=project, action_id=action_id)
        quality_action_undo(action=action, by=request.user)
        action = quality_action_get(project=project, action_id=action_id)
        return Response(QualityActionSerializer(action).data)


class GoldPromoteInputSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    label = serializers.CharField(max_length=200)


class GoldPromoteApi(APIView):
    """Promote one of the project's regular items to gold with the given answer."""

    @extend_schema(
        operation_id="project_quality_gold_promote",
        request=GoldPromoteInputSerializer,
        responses={200: OpenApiResponse(description="{item, gold}"), 400: NOT_FOUND},
    )
    def post(self, request: Request, pk: int) -> Response:
        project = _owner_project(request, pk)
        data = GoldPromoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = gold_promote(
            project=project, item_id=data.validated_data["item"], label=data.validated_data["label"]
        )
        body: dict[str, Any] = {"item": item.pk, "is_gold": item.is_gold, "gold": item.gold}
        return Response(body)
