"""The annotation API: projects, imports and the owner's view of items."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import MANAGERS, OWNERS, project_access
from annotation.api.serializers import (
    ImportJobOutputSerializer,
    ItemOutputSerializer,
    LabelSerializer,
    ProjectOutputSerializer,
)
from annotation.imports import import_job_create
from annotation.models import ImportJob, ProjectMember
from annotation.selectors import (
    import_job_get_for_user,
    item_list_for_project,
    project_list_with_role,
)
from annotation.services import project_create, project_update
from annotation.task_types import task_type_choices, task_types


class ProjectInputSerializer(serializers.Serializer):
    """Project settings as sent by clients; annotation.services validates the values."""

    name = serializers.CharField(max_length=200)
    instructions = serializers.CharField(allow_blank=True, required=False, max_length=50_000)
    task_type = serializers.ChoiceField(
        choices=task_type_choices(),
        required=False,
        help_text="What workers answer; fixed once the project exists. Default: single_label.",
    )
    labels = LabelSerializer(
        many=True,
        required=False,
        help_text="Required by the types that need labels ("
        + ", ".join(key for key, kind in task_types().items() if kind.needs_labels)
        + "); optional for the others.",
    )
    task_options = serializers.DictField(
        required=False,
        help_text='The task type\'s options, e.g. rating {"scale_min": 1, "scale_max": 5}; '
        "errors come back keyed options.<name>. Default: the type's defaults.",
    )
    overlap = serializers.IntegerField(required=False)
    gold_ratio = serializers.FloatField(required=False)
    reservation_timeout_seconds = serializers.IntegerField(required=False)
    sensitive_fields = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=50,
        help_text="Item data fields holding personal data: stricter masking for external pools.",
    )

    def validate_labels(self, labels: list[dict[str, str]]) -> list[dict[str, str]]:
        # The service validates values, hotkeys and colours.
        return [dict(label) for label in labels]

    def validate_task_options(self, options: dict) -> dict:
        return dict(options)  # the task type validates its options

    def validate_sensitive_fields(self, names: list[str]) -> list[str]:
        return list(dict.fromkeys(names))


class ProjectListCreateApi(GenericAPIView):
    """GET: projects the caller can see in any role. POST: create one; the caller owns it."""

    InputSerializer = ProjectInputSerializer
    serializer_class = ProjectInputSerializer  # what OPTIONS describes for POST

    @extend_schema(
        operation_id="projects_list", responses={200: ProjectOutputSerializer(many=True)}
    )
    def get(self, request: Request) -> Response:
        projects = project_list_with_role(user=request.user).order_by("-id")
        page = self.paginate_queryset(projects)
        return self.get_paginated_response(ProjectOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={201: ProjectOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(user=request.user, **data.validated_data)
        project.role = ProjectMember.Role.OWNER
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    """GET: one project (any role). PATCH: change its settings (owners only)."""

    InputSerializer = ProjectInputSerializer

    @extend_schema(responses={200: ProjectOutputSerializer})
    def get(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id)
        return Response(ProjectOutputSerializer(project).data)

    @extend_schema(request=InputSerializer, responses={200: ProjectOutputSerializer})
    def patch(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_update(project=project, actor=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data)


class ImportCreateApi(APIView):
    """Upload a CSV or JSONL file into a project (owners only); the import runs in the background.

    Poll GET /imports/{id}/ for progress. Rows are validated first; items are inserted only if
    every row is valid (all or nothing).
    """

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="ImportCreateInput")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(
            help_text=".csv, .jsonl or .ndjson (UTF-8), or a .zip of images (with an optional "
            "metadata.csv or metadata.jsonl) for projects whose items can be images."
        )

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: ImportJobOutputSerializer},
    )
    def post(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=OWNERS)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = import_job_create(
            project=project, user=request.user, uploaded_file=data.validated_data["file"]
        )
        job.refresh_from_db()  # the task may already have run (eager mode) after commit
        return Response(ImportJobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class ImportDetailApi(APIView):
    """An import's status, progress, counts and row errors (owners and reviewers)."""

    @extend_schema(responses={200: ImportJobOutputSerializer})
    def get(self, request: Request, import_job_id: int) -> Response:
        try:
            job = import_job_get_for_user(user=request.user, import_job_id=import_job_id)
        except ImportJob.DoesNotExist:
            raise NotFound() from None
        project_access(user=request.user, project_id=job.project_id, roles=MANAGERS)
        return Response(ImportJobOutputSerializer(job).data)


class ItemListApi(GenericAPIView):
    """A project's items with gold answers and progress (owners and reviewers), paginated."""

    @extend_schema(responses={200: ItemOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        project, _role = project_access(user=request.user, project_id=project_id, roles=MANAGERS)
        page = self.paginate_queryset(item_list_for_project(project=project))
        return self.get_paginated_response(ItemOutputSerializer(page, many=True).data)
