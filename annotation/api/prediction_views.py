"""API of a project's predictions (pre-labels) from the owner's own model.

POST stores a model's predictions with source "api"; a new upload with the same model name
replaces every earlier API prediction of that model name (any version), so re-sending a
model's full output after retraining is how it is updated. GET lists the project's
predictions of every source (imported, API, rules, built-in model), filtered by source and
model name.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.models import Prediction
from annotation.predictions import MAX_UPLOAD, prediction_list, predictions_upload


@extend_schema_serializer(component_name="PredictionUploadInput")
class PredictionUploadInputSerializer(serializers.Serializer):
    model_name = serializers.CharField(
        max_length=200, help_text="An upload replaces the earlier ones of this model name."
    )
    model_version = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )
    predictions = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        max_length=MAX_UPLOAD,
        help_text='[{"item": <item id>, "value": <answer in the task type\'s stored form (single '
        'label: also a bare label)>, "score": <0..1, optional>}]; errors come back keyed '
        "predictions[<index>].<field>, e.g. predictions[2].value.spans[1].end.",
    )


class PredictionUploadOutputSerializer(serializers.Serializer):
    model_name = serializers.CharField()
    model_version = serializers.CharField()
    stored = serializers.IntegerField(help_text="Predictions stored by this upload.")


class PredictionOutputSerializer(serializers.ModelSerializer):
    item = serializers.IntegerField(source="item_id")
    value = serializers.JSONField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "item",
            "value",
            "score",
            "source",
            "model_name",
            "model_version",
            "created_at",
        ]


class PredictionListFilterSerializer(serializers.Serializer):
    source = serializers.ChoiceField(choices=Prediction.Source.choices, required=False)
    model_name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class PredictionListCreateApi(GenericAPIView):
    """GET: the project's predictions, paginated (owners and reviewers).
    POST: store a model's predictions; they replace that model name's earlier ones (owners)."""

    serializer_class = PredictionUploadInputSerializer  # what OPTIONS describes for POST

    @extend_schema(
        summary="List the project's predictions (owners and reviewers)",
        parameters=[
            OpenApiParameter("source", OpenApiTypes.STR, enum=Prediction.Source.values),
            OpenApiParameter("model_name", OpenApiTypes.STR),
        ],
        responses={200: PredictionOutputSerializer(many=True)},
    )
    def get(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=MANAGERS)
        filters = PredictionListFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        predictions = prediction_list(project=project, **filters.validated_data)
        page = self.paginate_queryset(predictions)
        return self.get_paginated_response(PredictionOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Upload a model's predictions, replacing that model name's earlier ones (owners)",
        request=PredictionUploadInputSerializer,
        responses={201: PredictionUploadOutputSerializer},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = PredictionUploadInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        stored = predictions_upload(project=project, **data.validated_data)
        body = {
            "model_name": data.validated_data["model_name"].strip(),
            "model_version": data.validated_data["model_version"].strip(),
            "stored": stored,
        }
        return Response(PredictionUploadOutputSerializer(body).data, status=status.HTTP_201_CREATED)
