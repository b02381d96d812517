"""The pay API: settings, decisions on annotations, bonuses, the ledger and the payout CSV.

Who may do what: any member reads the settings and the fair-pay figures; owners change them,
grant bonuses and export payouts; owners and reviewers approve and reject; owners read every
worker's ledger and everyone else only their own; people without a role get 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import Annotation, Project, ProjectMember
from crowd.models import PayDecision
from crowd.pay import (
    FairPay,
    Ledger,
    annotation_decide,
    annotation_get_for_decision,
    bonus_grant,
    fair_pay_get,
    ledger_get,
    pay_floor_cents,
    pay_settings_get,
    pay_settings_update,
    payout_export,
    payout_filename,
)

PAY_DENIED = "Only the project's owners may change pay, grant bonuses or export payouts."
DECIDE_DENIED = "Only the project's owners and reviewers may approve or reject work."


class PaySettingsInputSerializer(serializers.Serializer):
    currency = serializers.CharField(max_length=3, min_length=3)
    reward_cents = serializers.IntegerField(min_value=0)
    gold_reward_cents = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    fair_pay_floor_cents_per_hour = serializers.IntegerField(
        min_value=0, allow_null=True, required=False
    )


class FairPaySerializer(serializers.Serializer):
    samples = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    cents_per_hour = serializers.IntegerField(allow_null=True)
    floor_cents_per_hour = serializers.IntegerField()
    is_below_floor = serializers.BooleanField()


class PaySettingsOutputSerializer(serializers.Serializer):
    currency = serializers.CharField()
    reward_cents = serializers.IntegerField()
    gold_reward_cents = serializers.IntegerField(allow_null=True)
    fair_pay_floor_cents_per_hour = serializers.IntegerField(allow_null=True)
    effective_floor_cents_per_hour = serializers.IntegerField()
    fair_pay = FairPaySerializer()
    my_fair_pay = FairPaySerializer(allow_null=True)


class DecisionInputSerializer(serializers.Serializer):
    annotation = serializers.IntegerField()
    status = serializers.ChoiceField(choices=PayDecision.Status.choices)
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class DecisionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    annotation = serializers.IntegerField(source="annotation_id")
    worker = serializers.IntegerField(source="worker_id")
    status = serializers.CharField()
    reason = serializers.CharField()
    source = serializers.CharField()
    amount_cents = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class BonusInputSerializer(serializers.Serializer):
    worker = serializers.IntegerField()
    amount_cents = serializers.IntegerField(min_value=1)
    note = serializers.CharField(max_length=2000)


class BonusOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    worker = serializers.IntegerField(source="worker_id")
    amount_cents = serializers.IntegerField()
    note = serializers.CharField()
    created_at = serializers.DateTimeField()


class LedgerRowSerializer(serializers.Serializer):
    worker = serializers.IntegerField(source="worker_id")
    username = serializers.CharField()
    approved = serializers.IntegerField(source="approved_count")
    earned_cents = serializers.IntegerField()
    pending = serializers.IntegerField(source="pending_count")
    pending_cents = serializers.IntegerField()
    rejected = serializers.IntegerField(source="rejected_count")
    bonus_cents = serializers.IntegerField()
    total_cents = serializers.IntegerField()


class LedgerOutputSerializer(serializers.Serializer):
    currency = serializers.CharField()
    rows = LedgerRowSerializer(many=True)


class PayoutQuerySerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        # `from` is a Python keyword, so the fields are declared here, not as attributes.
        return {
            "from": serializers.DateField(source="start"),
            "to": serializers.DateField(source="end"),
            "identities": serializers.BooleanField(required=False, default=False),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end"] < attrs["start"]:
            raise serializers.ValidationError({"to": ["The period ends before it starts."]})
        return attrs


def _is_labeler(project: Project) -> bool:
    return project.role == ProjectMember.Role.ANNOTATOR


def _settings_payload(request: Request, project: Project) -> dict[str, Any]:
    pay = pay_settings_get(project=project)
    mine: FairPay | None = None
    if _is_labeler(project):
        mine = fair_pay_get(project=project, worker=request.user)  # type: ignore[arg-type]
    return {
        "currency": pay.currency,
        "reward_cents": pay.reward_cents,
        "gold_reward_cents": pay.gold_reward_cents,
        "fair_pay_floor_cents_per_hour": pay.fair_pay_floor_cents_per_hour,
        "effective_floor_cents_per_hour": pay_floor_cents(pay),
        "fair_pay": fair_pay_get(project=project),
        "my_fair_pay": mine,
    }


class PaySettingsApi(APIView):
    """What the project pays and its fair-pay monitor (any member); set pay (owners)."""

    @extend_schema(responses={200: PaySettingsOutputSerializer})
    def get(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id)
        return Response(PaySettingsOutputSerializer(_settings_payload(request, project)).data)

    @extend_schema(request=PaySettingsInputSerializer, responses={200: PaySettingsOutputSerializer})
    def put(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(
            user=request.user, project_id=project_id, roles=OWNERS, denied=PAY_DENIED
        )
        data = PaySettingsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pay_settings_update(project=project, **data.validated_data)
        return Response(PaySettingsOutputSerializer(_settings_payload(request, project)).data)


class PayDecisionCreateApi(APIView):
    """Approve or reject one of the project's annotations, or overturn the decision on it
    (owners and reviewers). Rejections need a reason, which the worker reads."""

    @extend_schema(request=DecisionInputSerializer, responses={201: DecisionOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project, role = project_access(
            user=request.user, project_id=project_id, roles=MANAGERS, denied=DECIDE_DENIED
        )
        data = DecisionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            annotation = annotation_get_for_decision(
                project=project, annotation_id=data.validated_data["annotation"]
            )
        except Annotation.DoesNotExist:
            raise NotFound("No such annotation in this project.") from None
        source = PayDecision.Source.REVIEWER if role == "reviewer" else PayDecision.Source.OWNER
        decision = annotation_decide(
            annotation=annotation,
            status=data.validated_data["status"],
            reason=data.validated_data["reason"],
            decided_by=request.user,
            source=source,
        )
        return Response(DecisionOutputSerializer(decision).data, status=status.HTTP_201_CREATED)


class BonusCreateApi(APIView):
    """Grant a worker of the project a bonus with a note (owners only)."""

    @extend_schema(request=BonusInputSerializer, responses={201: BonusOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(
            user=request.user, project_id=project_id, roles=OWNERS, denied=PAY_DENIED
        )
        data = BonusInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        worker = get_user_model().objects.filter(pk=data.validated_data["worker"]).first()
        if worker is None:
            raise NotFound("No such worker.")
        bonus = bonus_grant(
            project=project,
            worker=worker,
            amount_cents=data.validated_data["amount_cents"],
            note=data.validated_data["note"],
            granted_by=request.user,
        )
        return Response(BonusOutputSerializer(bonus).data, status=status.HTTP_201_CREATED)


class LedgerApi(APIView):
    """The ledger: every worker's for owners, the caller's own row for everyone else."""

    @extend_schema(responses={200: LedgerOutputSerializer})
    def get(self, request: Request, project_id: int) -> Response:
        project, role = project_access(user=request.user, project_id=project_id)
        own = None if role == ProjectMember.Role.OWNER else request.user
        ledger: Ledger = ledger_get(project=project, worker=own)  # type: ignore[arg-type]
        return Response(LedgerOutputSerializer(ledger).data)


class PayoutExportApi(APIView):
    """The payout CSV for a period (owners only): one row per worker under a pseudonymous id;
    `identities=1` adds username, email and external platform ids."""

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=True),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True),
            OpenApiParameter(
                "identities",
                OpenApiTypes.BOOL,
                required=False,
                description="1 adds username, email and external_ids columns (off by default).",
            ),
        ],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request: Request, project_id: int) -> HttpResponse:
        project, _role = project_access(
            user=request.user, project_id=project_id, roles=OWNERS, denied=PAY_DENIED
        )
        query = PayoutQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["start"], query.validated_data["end"]
        identities = query.validated_data["identities"]
        body = payout_export(
            project=project, start=start, end=end, identities=identities, actor=request.user
        )
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        name = payout_filename(project=project, start=start, end=end, identities=identities)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
