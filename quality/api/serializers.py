"""Shapes of the quality API's answers."""

from __future__ import annotations

from rest_framework import serializers


class QualityProgressSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="Regular (non-gold) items.")
    complete = serializers.IntegerField(help_text="Regular items with all wanted annotations.")
    gold_items = serializers.IntegerField()
    annotations_wanted = serializers.IntegerField()
    annotations_made = serializers.IntegerField()


class QualityWorkerSerializer(serializers.Serializer):
    worker_id = serializers.IntegerField()
    username = serializers.CharField()
    annotation_count = serializers.IntegerField()
    gold_seen = serializers.IntegerField()
    gold_correct = serializers.IntegerField()
    gold_accuracy = serializers.FloatField(
        allow_null=True, help_text="gold_correct / gold_seen; null before any gold question."
    )
    majority_agreement = serializers.FloatField(
        allow_null=True,
        help_text="Share of the worker's labels on regular items with two or more labels "
        "that equal the item's majority label; null when there are none.",
    )
    median_duration_ms = serializers.IntegerField(allow_null=True)


class ProjectQualityOutputSerializer(serializers.Serializer):
    progress = QualityProgressSerializer()
    fleiss_kappa = serializers.FloatField(
        allow_null=True, help_text="Over regular items; null until two labels overlap."
    )
    krippendorff_alpha = serializers.FloatField(
        allow_null=True, help_text="Nominal alpha over regular items; null until labels overlap."
    )
    items_scored = serializers.IntegerField(help_text="Annotated items, gold included.")
    annotations_scored = serializers.IntegerField(
        help_text="Annotations counted (each worker's latest on an item)."
    )
    computed_at = serializers.DateTimeField(
        allow_null=True, help_text="When the scores were last computed; null before the first."
    )
    workers = QualityWorkerSerializer(many=True)
    label_distribution = serializers.DictField(
        child=serializers.IntegerField(),
        source="label_counts",
        help_text="Regular items per majority label, in label-set order.",
    )
