"""The API of external studies and qualification tests (owners only): create and list entry
links, configure the test, and read every attempt. Serializers live here: they serve only
these endpoints."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import OWNERS, project_access
from annotation.models import Project
from crowd.external import study_create, study_list, study_pool_choices
from crowd.models import ExternalStudy, Qualification, QualificationAttempt
from crowd.qualification import (
    qualification_attempt_list,
    qualification_configure,
    qualification_get,
)

STUDIES_DENIED = "Only the project's owners manage external studies."
QUALIFICATION_DENIED = "Only the project's owners manage the qualification test."


def _owned(request: Request, project_id: int, denied: str) -> Project:
    return project_access(user=request.user, project_id=project_id, roles=OWNERS, denied=denied)[0]


class StudyInputSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(choices=ExternalStudy.Platform.choices)
    pool = serializers.IntegerField(required=False, allow_null=True)
    quota = serializers.IntegerField(min_value=1, max_value=10_000)
    completion_code = serializers.CharField(max_length=64)
    return_url = serializers.URLField(required=False, allow_blank=True, max_length=200)


class StudyOutputSerializer(serializers.ModelSerializer):
    entry_url = serializers.SerializerMethodField()

    class Meta:
        model = ExternalStudy
        fields = [
            "id",
            "platform",
            "pool",
            "slug",
            "entry_url",
            "quota",
            "completion_code",
            "return_url",
            "active",
            "created_at",
        ]

    def get_entry_url(self, study: ExternalStudy) -> str:
        return reverse("external:study-entry", args=[study.slug])


class QualificationSerializer(serializers.Serializer):
    items = serializers.ListField(child=serializers.IntegerField(), min_length=1, max_length=500)
    pass_mark = serializers.FloatField(min_value=0, max_value=1)
    attempts_allowed = serializers.IntegerField(min_value=1, max_value=100)
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=365 * 86_400)
    active = serializers.BooleanField(default=True)


class AttemptOutputSerializer(serializers.ModelSerializer):
    worker = serializers.CharField(source="worker.username")

    class Meta:
        model = QualificationAttempt
        fields = ["id", "worker", "correct", "passed", "started_at", "finished_at"]


def _qualification_data(qualification: Qualification) -> dict[str, object]:
    return {
        "items": sorted(qualification.items.values_list("pk", flat=True)),
        "pass_mark": qualification.pass_mark,
        "attempts_allowed": qualification.attempts_allowed,
        "cooldown_seconds": qualification.cooldown_seconds,
        "active": qualification.active,
    }


class ProjectStudyListApi(APIView):
    """List the project's external studies, or create one (owners only)."""

    @extend_schema(responses={200: StudyOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project = _owned(request, project_id, STUDIES_DENIED)
        return Response(StudyOutputSerializer(study_list(project=project), many=True).data)

    @extend_schema(request=StudyInputSerializer, responses={201: StudyOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = _owned(request, project_id, STUDIES_DENIED)
        data = StudyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        pool_id = values.pop("pool", None)
        pool = None
        if pool_id is not None:
            pool = study_pool_choices(project=project).filter(pk=pool_id).first()
            if pool is None:
                raise serializers.ValidationError(
                    {"pool": ["Choose an external-crowd pool that labels here."]}
                )
        study = study_create(project=project, pool=pool, **values)
        return Response(StudyOutputSerializer(study).data, status=status.HTTP_201_CREATED)


class ProjectQualificationApi(APIView):
    """Read or set the project's qualification test (owners only)."""

    @extend_schema(responses={200: QualificationSerializer})
    def get(self, request: Request, project_id: int) -> Response:
        project = _owned(request, project_id, QUALIFICATION_DENIED)
        qualification = qualification_get(project=project)
        if qualification is None:
            raise NotFound("This project has no qualification test.")
        return Response(_qualification_data(qualification))

    @extend_schema(request=QualificationSerializer, responses={200: QualificationSerializer})
    def put(self, request: Request, project_id: int) -> Response:
        project = _owned(request, project_id, QUALIFICATION_DENIED)
        data = QualificationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        qualification = qualification_configure(
            project=project, item_ids=values.pop("items"), **values
        )
        return Response(_qualification_data(qualification))


class ProjectQualificationAttemptListApi(APIView):
    """Every attempt at the project's qualification test, newest first (owners only)."""

    @extend_schema(responses={200: AttemptOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project = _owned(request, project_id, QUALIFICATION_DENIED)
        qualification = qualification_get(project=project)
        if qualification is None:
            return Response([])
        attempts = qualification_attempt_list(qualification=qualification)
        return Response(AttemptOutputSerializer(attempts, many=True).data)
