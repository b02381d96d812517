"""The release diff API: counts and a page of changes between two versions, or the CSV file."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApplicationError
from quality.release_diff_views import diff_csv_response
from quality.releases.diff import (
    KINDS,
    PAGE_SIZE,
    Change,
    diff_kind_clean,
    release_diff,
    release_pair_get,
)

MAX_PAGE_SIZE = 1000


VersionOutputSerializer = inline_serializer(
    "ReleaseDiffVersion",
    {
        "id": serializers.IntegerField(),
        "version": serializers.IntegerField(),
        "tag": serializers.CharField(),
    },
)
ChangeOutputSerializer = inline_serializer(
    "ReleaseDiffChange",
    {
        "item_id": serializers.IntegerField(),
        "change": serializers.ChoiceField(choices=KINDS),
        "from": serializers.CharField(allow_null=True),
        "to": serializers.CharField(allow_null=True),
        "from_value": serializers.JSONField(required=False, allow_null=True),
        "to_value": serializers.JSONField(required=False, allow_null=True),
    },
)
DiffOutputSerializer = inline_serializer(
    "ReleaseDiff",
    {
        "project": serializers.IntegerField(),
        "from": VersionOutputSerializer,
        "to": VersionOutputSerializer,
        "structured": serializers.BooleanField(),
        "kind": serializers.CharField(allow_null=True),
        "counts": serializers.DictField(child=serializers.IntegerField()),
        "page": serializers.IntegerField(),
        "page_size": serializers.IntegerField(),
        "pages": serializers.IntegerField(),
        "total": serializers.IntegerField(),
        "changes": serializers.ListField(child=ChangeOutputSerializer),
    },
)


class _FormatIsAFileType(DefaultContentNegotiation):
    """`?format=csv` asks for the diff file here, not for one of DRF's renderers."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


def _positive(raw: Any, *, name: str, default: int, most: int | None = None) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or (most is not None and value > most):
        limit = f" and at most {most}" if most is not None else ""
        message = f"{name} must be a whole number of at least 1{limit} (got {raw!r})."
        raise ApplicationError(message, fields={name: [message]}, code="invalid")
    return value


def _change(change: Change, *, structured: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "item_id": change.item_id,
        "change": change.change,
        "from": change.from_label or None,
        "to": change.to_label or None,
    }
    if structured:
        row["from_value"] = change.from_value
        row["to_value"] = change.to_value
    return row


class ReleaseDiffApi(APIView):
    """Items added, removed and relabelled between two versions (owners and reviewers)."""

    content_negotiation_class = _FormatIsAFileType

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.INT, required=True, description="Old version."),
            OpenApiParameter("to", OpenApiTypes.INT, required=True, description="New version."),
            OpenApiParameter("kind", OpenApiTypes.STR, enum=list(KINDS), required=False),
            OpenApiParameter("page", OpenApiTypes.INT, required=False),
            OpenApiParameter("page_size", OpenApiTypes.INT, required=False),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], required=False),
        ],
        responses={
            (200, "application/json"): DiffOutputSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
            400: OpenApiResponse(description="A version is missing or unknown."),
            409: OpenApiResponse(description="A release is not ready."),
        },
    )
    def get(self, request: Request, project_id: int) -> HttpResponseBase:
        params = request.query_params
        fmt = params.get("format", "json") or "json"
        if fmt not in ("json", "csv"):
            message = f"Unknown format {fmt!r}; use json or csv."
            raise ApplicationError(message, fields={"format": [message]}, code="unknown_format")
        kind = diff_kind_clean(params.get("kind"))
        old, new = release_pair_get(
            user=request.user,
            project_id=project_id,
            from_version=params.get("from"),
            to_version=params.get("to"),
        )
        page = _positive(params.get("page"), name="page", default=1)
        size = _positive(
            params.get("page_size"), name="page_size", default=PAGE_SIZE, most=MAX_PAGE_SIZE
        )
        diff = release_diff(old=old, new=new)
        if fmt == "csv":
            return diff_csv_response(diff, kind=kind)
        total = diff.count(kind)
        return Response(
            {
                "project": project_id,
                "from": {"id": old.pk, "version": old.version, "tag": old.tag},
                "to": {"id": new.pk, "version": new.version, "tag": new.tag},
                "structured": diff.structured,
                "kind": kind or None,
                "counts": {
                    "added": diff.added,
                    "removed": diff.removed,
                    "changed": diff.changed,
                    "unchanged": diff.unchanged,
                },
                "page": page,
                "page_size": size,
                "pages": max((total + size - 1) // size, 1),
                "total": total,
                "changes": [
                    _change(change, structured=diff.structured)
                    for change in diff.page(number=page, size=size, kind=kind)
                ],
            }
        )
