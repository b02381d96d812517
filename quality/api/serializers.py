"""Shapes of the quality API's answers."""

from __future__ import annotations

from rest_framework import serializers

from quality.models import ReviewDecision
from quality.review import ItemReview


class QualityProgressSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="Regular (non-gold) items.")
    complete = serializers.IntegerField(help_text="Regular items with all wanted annotations.")
    gold_items = serializers.IntegerField()
    annotations_wanted = serializers.IntegerField()
    annotations_made = serializers.IntegerField()


class QualityFlagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    source = serializers.CharField()
    rule = serializers.CharField()
    signal = serializers.CharField(source="evidence.signal", default="", allow_blank=True)
    created_at = serializers.DateTimeField()


class EstimateSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)


class LabelBalanceSerializer(serializers.Serializer):
    label = serializers.CharField()
    count = serializers.IntegerField()
    share = serializers.FloatField()
    expected_share = serializers.FloatField(allow_null=True)


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
    gold_low = serializers.FloatField(allow_null=True, help_text="Wilson 95% lower bound.")
    gold_high = serializers.FloatField(allow_null=True, help_text="Wilson 95% upper bound.")
    gold_recent = serializers.FloatField(
        allow_null=True,
        help_text="Accuracy on the worker's latest 20 gold answers: the trend.",
    )
    reliability = serializers.FloatField(
        allow_null=True, help_text="The consensus model's probability of a right answer."
    )
    class_recall = serializers.DictField(
        child=serializers.FloatField(allow_null=True), help_text="Recall on gold per label."
    )
    signals = serializers.JSONField(help_text='Spam signals: {name: value, "<name>_n": evidence}.')
    excluded = serializers.BooleanField(help_text="Labels currently left out of consensus.")
    flags = QualityFlagSerializer(many=True, help_text="Active quality actions on the worker.")


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
    method = serializers.CharField(help_text="Consensus method used by the last full recompute.")
    method_requested = serializers.CharField()
    method_reason = serializers.CharField()
    full_at = serializers.CharField(allow_null=True, help_text="When the last full recompute ran.")
    agreement = EstimateSerializer(
        many=True, help_text="Coefficients with bootstrap 95% intervals."
    )
    per_label_agreement = serializers.ListField(child=serializers.DictField())
    agreement_over_time = serializers.ListField(
        child=serializers.DictField(), source="details.over_time", default=list
    )
    gold_trend = serializers.ListField(
        child=serializers.DictField(), source="details.gold_trend", default=list
    )
    confusion = serializers.DictField(help_text="Rows: gold label, columns: crowd answer.")
    label_balance = LabelBalanceSerializer(
        many=True, help_text="Consensus share per label against the expected share."
    )
    gold_pool = serializers.DictField()
    review_queue_count = serializers.IntegerField(source="review_count")


class ReviewQueueItemSerializer(serializers.Serializer):
    """One queued item: read from the ItemScore the queue selector returns (item joined)."""

    item_id = serializers.IntegerField()
    text = serializers.CharField(source="item.text")
    label = serializers.CharField(help_text="The engine's consensus label ('' if none).")
    majority_label = serializers.CharField()
    confidence = serializers.FloatField()
    annotation_count = serializers.IntegerField()
    state = serializers.CharField()


class ReviewAnswerSerializer(serializers.Serializer):
    worker = serializers.CharField(source="pseudonym", help_text="'Worker A', stable per item.")
    label = serializers.CharField()
    reliability = serializers.FloatField(allow_null=True)
    excluded = serializers.BooleanField()


class ReviewDecisionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    action = serializers.CharField()
    label = serializers.CharField(source="value.label")
    consensus_label = serializers.CharField()
    consensus_confidence = serializers.FloatField(allow_null=True)
    reviewer = serializers.CharField(source="reviewer.username")
    created_at = serializers.DateTimeField()


class ReviewItemOutputSerializer(serializers.Serializer):
    """An item as a reviewer sees it: data, pseudonymous answers, consensus and posterior."""

    item_id = serializers.IntegerField(source="item.pk")
    data = serializers.JSONField(source="item.data")
    is_gold = serializers.BooleanField(source="item.is_gold")
    state = serializers.CharField()
    consensus_label = serializers.CharField()
    confidence = serializers.FloatField(allow_null=True)
    method = serializers.CharField(source="score.method", default="")
    posterior = serializers.SerializerMethodField()
    answers = ReviewAnswerSerializer(many=True)
    decision = ReviewDecisionOutputSerializer(allow_null=True)

    def get_posterior(self, review: ItemReview) -> dict[str, float]:
        # Already read by the selector: the model's posterior, or vote shares without one.
        return {bar.label: bar.probability for bar in review.bars}


class ReviewDecisionInputSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ReviewDecision.Action.choices)
    label = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required to pick or correct; accepting may leave it blank.",
    )
