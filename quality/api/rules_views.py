"""API of labeling rules: list and add (owners write, reviewers read), change, delete, run."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from quality.models import LabelingRule
from quality.rules.services import (
    project_get_for_rules,
    rule_create,
    rule_delete,
    rule_list_for_project,
    rule_update,
    rules_run_request,
    rules_run_state,
)


class RuleInputSerializer(serializers.Serializer):
    """Shapes only; the service checks kinds, labels and settings with field errors."""

    name = serializers.CharField(max_length=200, trim_whitespace=True)
    kind = serializers.CharField(max_length=16)
    label = serializers.CharField(max_length=200, trim_whitespace=False)
    config = serializers.JSONField()
    active = serializers.BooleanField(required=False)


class RuleOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabelingRule
        fields = ("id", "name", "kind", "label", "config", "active", "stats", "ran_at")


class RuleRunOutputSerializer(serializers.Serializer):
    running = serializers.BooleanField()
    state = serializers.CharField()
    done = serializers.IntegerField()
    ran_at = serializers.DateTimeField(allow_null=True)


class RuleListApi(APIView):
    """A project's rules with their last stats (owners and reviewers); owners add one."""

    @extend_schema(responses={200: RuleOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project = project_get_for_rules(user=request.user, project_id=project_id)
        return Response(
            RuleOutputSerializer(rule_list_for_project(project=project), many=True).data
        )

    @extend_schema(request=RuleInputSerializer, responses={201: RuleOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_rules(user=request.user, project_id=project_id, manage=True)
        data = RuleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule = rule_create(project=project, user=request.user, **data.validated_data)
        return Response(RuleOutputSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailApi(APIView):
    """One rule: read it (owners and reviewers), change any of its fields or delete it (owners)."""

    def _rule(
        self, request: Request, project_id: int, rule_id: int, *, manage: bool
    ) -> LabelingRule:
        project = project_get_for_rules(user=request.user, project_id=project_id, manage=manage)
        return get_object_or_404(rule_list_for_project(project=project), pk=rule_id)

    @extend_schema(responses={200: RuleOutputSerializer})
    def get(self, request: Request, project_id: int, rule_id: int) -> Response:
        rule = self._rule(request, project_id, rule_id, manage=False)
        return Response(RuleOutputSerializer(rule).data)

    @extend_schema(request=RuleInputSerializer(partial=True), responses={200: RuleOutputSerializer})
    def patch(self, request: Request, project_id: int, rule_id: int) -> Response:
        rule = self._rule(request, project_id, rule_id, manage=True)
        data = RuleInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        rule = rule_update(rule=rule, actor=request.user, **data.validated_data)
        return Response(RuleOutputSerializer(rule).data)

    @extend_schema(responses={204: OpenApiResponse(description="Deleted.")})
    def delete(self, request: Request, project_id: int, rule_id: int) -> Response:
        rule = self._rule(request, project_id, rule_id, manage=True)
        rule_delete(rule=rule, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RuleRunApi(APIView):
    """Queue a run of the active rules (owners); 202 with the run state."""

    @extend_schema(request=None, responses={202: RuleRunOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = project_get_for_rules(user=request.user, project_id=project_id, manage=True)
        rules_run_request(project=project)
        body = RuleRunOutputSerializer(rules_run_state(project=project)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)
