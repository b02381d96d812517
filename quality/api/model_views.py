"""The built-in model's API: list a project's versions, queue a training."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from quality.model import model_train_request, model_version_list
from quality.model.selectors import project_get_for_model
from quality.models import ModelVersion


class ModelVersionOutputSerializer(serializers.ModelSerializer):
    macro_f1 = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "status",
            "train_count",
            "validation_count",
            "validation_accuracy",
            "macro_f1",
            "error",
            "created_at",
            "trained_at",
        ]

    def get_macro_f1(self, version: ModelVersion) -> float | None:
        return (version.details or {}).get("macro_f1")


class ModelVersionListApi(APIView):
    """A project's model versions, newest first (owners and reviewers)."""

    @extend_schema(responses={200: ModelVersionOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project, _role = project_get_for_model(user=request.user, project_id=project_id)
        versions = model_version_list(project=project)
        return Response(ModelVersionOutputSerializer(versions, many=True).data)


class ModelTrainApi(APIView):
    """Queue a training of the project's model (owners); 400 when it cannot train yet."""

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "ModelTrainQueued",
                {"queued": serializers.BooleanField(), "vetted": serializers.IntegerField()},
            )
        },
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _role = project_get_for_model(
            user=request.user, project_id=project_id, manage=True
        )
        count = model_train_request(project=project, actor=request.user)
        return Response({"queued": True, "vetted": count}, status=status.HTTP_202_ACCEPTED)
