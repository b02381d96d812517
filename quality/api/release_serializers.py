"""Shapes of the release API: what owners send to create a release and what they read back."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from quality.models import Release, ReleaseFile


class ReleaseCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    notes = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    purpose = serializers.CharField(
        max_length=10_000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why the dataset was made (shown in its datasheet).",
    )
    licence = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="The licence the dataset is released under, e.g. CC BY 4.0.",
    )
    intended_use = serializers.CharField(
        max_length=10_000,
        required=False,
        allow_blank=True,
        default="",
        help_text="What the dataset is for, and what it is not for.",
    )
    include_raw = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Also export each annotation, with a pseudonymous annotator id.",
    )
    include_identities = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Only with include_raw: each annotation also carries the annotator's username, "
            "email and external platform ids. Off unless asked for explicitly."
        ),
    )

    policy = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text=(
            'Which items the release takes: {"mode": "consensus" | "confidence" | "expert", '
            '"min_confidence": 0..1 (confidence mode only), "exclude_flagged": bool}. '
            "Omitted: every item with a consensus."
        ),
    )
    split = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text=(
            'A deterministic train/validation/test split: {"seed": int, "ratios": {"train", '
            '"validation", "test"} adding up to 1, "group_key": item data field or ""}; '
            "missing fields default to seed 42, 80/10/10, no group key; true: all defaults. "
            "Omitted, null, false or {}: no split column."
        ),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("include_identities") and not attrs.get("include_raw"):
            raise serializers.ValidationError(
                {"include_identities": "Identities are only exported with include_raw."}
            )
        return attrs


class ReleaseCountsSerializer(serializers.Serializer):
    items = serializers.IntegerField()
    gold_items = serializers.IntegerField()
    annotations = serializers.IntegerField()
    workers = serializers.IntegerField()


class ReleaseOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    version = serializers.IntegerField()
    tag = serializers.CharField()
    name = serializers.CharField()
    notes = serializers.CharField()
    status = serializers.ChoiceField(choices=Release.Status.choices)
    progress = serializers.FloatField(help_text="0 to 1 while building.")
    error = serializers.CharField()
    include_raw = serializers.BooleanField()
    include_identities = serializers.BooleanField()
    item_cutoff_id = serializers.IntegerField()
    annotation_cutoff_id = serializers.IntegerField()
    policy = serializers.JSONField(
        help_text="The selection policy (normalised; {} on releases made before policies)."
    )
    split = serializers.JSONField(help_text="The split config; {} when there is none.")
    created_by = serializers.CharField(source="created_by.username")
    created_at = serializers.DateTimeField()
    built_at = serializers.DateTimeField(allow_null=True)
    # Read from the stored manifest (no query); null until the release is built.
    counts = ReleaseCountsSerializer(source="manifest.counts", allow_null=True, read_only=True)


class ReleaseFileOutputSerializer(serializers.Serializer):
    format = serializers.CharField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    download_url = serializers.SerializerMethodField()

    def get_download_url(self, record: ReleaseFile) -> str:
        url = reverse("api:release-download", args=[record.release_id])
        return f"{url}?format={record.format}"


class ReleaseDetailOutputSerializer(ReleaseOutputSerializer):
    config_snapshot = serializers.JSONField(help_text="The project's settings at creation.")
    manifest = serializers.JSONField(allow_null=True, help_text="Null until the release is built.")
    files = serializers.SerializerMethodField()

    @extend_schema_field(ReleaseFileOutputSerializer(many=True))
    def get_files(self, release: Release) -> list[dict[str, Any]]:
        # `files` is prefetched by the selector; only the downloadable data files are listed.
        records = [f for f in release.files.all() if f.format != "manifest"]
        return list(ReleaseFileOutputSerializer(records, many=True).data)
