"""The built-in model's predictions and the serve ranks active learning orders work by.

Predictions go through annotation.predictions.predictions_replace (source "model"), so the task
type checks them like answers and gold items never get one. Serve ranks are computed from the
stored predictions alone, so changing the serving order re-ranks without running the model:

- "uncertainty": 1 - the model's confidence in its answer (least sure first);
- "rare_first": the inverse share of items predicted to carry the answer's rarest label (items
  of rarely predicted classes first);
- "default": ranks are kept as uncertainty (the claim query ignores them).

Items without a prediction rank 0 (last).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from annotation.models import Item, Prediction, Project
from annotation.predictions import predictions_replace
from quality.model.training import (
    MODEL_NAME,
    artifact_load,
    confidence_from_proba,
    labels_from_proba,
    predict_proba,
)
from quality.models import ModelVersion

SERVING_ORDERS = ("default", "uncertainty", "rare_first")
PREDICT_BATCH = 5000
RANK_BATCH = 2000  # item rows per serve-rank update transaction
NONE_KEY = "\x00none"  # the empty label set, counted as a class of its own for rare_first


def model_predict_all(*, project: Project, version: ModelVersion) -> int:
    """Predict every regular text item with `version`, store the predictions (replacing the
    model's earlier ones) and update serve ranks. Returns how many items were predicted."""
    stored = artifact_load(version=version)
    pipeline, classes, multi = stored["pipeline"], stored["classes"], stored["multi"]
    allow_none = bool(project.task_options.get("allow_none", False))
    items = [
        (item_id, data["text"])
        for item_id, data in Item.objects.filter(
            project_id=project.pk, is_gold=False, data__has_key="text"
        )
        .order_by("pk")
        .values_list("pk", "data")
        if isinstance(data.get("text"), str)
    ]
    rows = []
    for start in range(0, len(items), PREDICT_BATCH):
        batch = items[start : start + PREDICT_BATCH]
        proba = predict_proba(pipeline, [text for _id, text in batch])
        labels = labels_from_proba(proba, classes, multi=multi, allow_none=allow_none)
        confidence = confidence_from_proba(proba, multi=multi)
        for (item_id, _text), picked, score in zip(batch, labels, confidence, strict=True):
            value = {"labels": list(picked)} if multi else {"label": picked[0]}
            rows.append((item_id, value, min(max(float(score), 0.0), 1.0)))
    count = predictions_replace(
        project=project,
        source=Prediction.Source.MODEL,
        rows=rows,
        model_name=MODEL_NAME,
        model_version=str(version.version),
    )
    serve_rank_update(project=project)
    return count


def serve_ranks_compute(
    *, predicted: Sequence[Sequence[str]], confidence: Sequence[float], order: str
) -> np.ndarray:
    """Serve ranks (larger is served earlier) for predictions given as label tuples with the
    model's confidence in each, under serving order `order`."""
    if order not in SERVING_ORDERS:
        raise ValueError(f"unknown serving order {order!r}")
    sure = np.asarray(confidence, dtype=np.float64)
    if order != "rare_first":
        return np.clip(1.0 - sure, 0.0, 1.0)
    counts: Counter[str] = Counter()
    for labels in predicted:
        counts.update(labels or (NONE_KEY,))
    total = len(predicted)
    return np.array(
        [max(total / counts[label] for label in (labels or (NONE_KEY,))) for labels in predicted],
        dtype=np.float64,
    )


def _labels_of(value: dict) -> tuple[str, ...]:
    if "labels" in value:
        return tuple(value["labels"])
    return (value["label"],) if "label" in value else ()


def serve_rank_update(*, project: Project) -> int:
    """Set every regular item's serve rank from the built-in model's stored predictions under
    the project's serving order (0 without one). Returns how many items have a prediction."""
    rows = list(
        Prediction.objects.filter(
            project_id=project.pk, source=Prediction.Source.MODEL, model_name=MODEL_NAME
        )
        .order_by("item_id")
        .values_list("item_id", "value", "score")
    )
    ids = [item_id for item_id, _value, _score in rows]
    ranks = serve_ranks_compute(
        predicted=[_labels_of(value) for _id, value, _score in rows],
        confidence=[score if score is not None else 1.0 for _id, _value, score in rows],
        order=project.serving_order,
    )
    _ranks_write(project_id=project.pk, ids=ids, ranks=[float(rank) for rank in ranks])
    return len(ids)


def _ranks_write(*, project_id: int, ids: list[int], ranks: list[float]) -> None:
    """Write the ranks (others of the project's regular items go back to 0).

    In short transactions of RANK_BATCH rows, in primary-key order (the claim's lock order):
    claims skip locked item rows, so one long update would hide the project's work from them.
    """
    rank_of = dict(zip(ids, ranks, strict=True))
    regular = Item.objects.filter(project_id=project_id, is_gold=False)
    stale = sorted(set(regular.exclude(serve_rank=0).values_list("pk", flat=True)) - set(rank_of))
    for start in range(0, len(stale), RANK_BATCH):
        Item.objects.filter(pk__in=stale[start : start + RANK_BATCH]).update(serve_rank=0)
    ordered = sorted(rank_of)
    for start in range(0, len(ordered), RANK_BATCH):
        batch = ordered[start : start + RANK_BATCH]
        values = [rank_of[item_id] for item_id in batch]
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        'UPDATE "annotation_item" AS i SET "serve_rank" = v.rank '
                        "FROM unnest(%s::bigint[], %s::float8[]) AS v(id, rank) "
                        'WHERE i."id" = v.id AND i."project_id" = %s '
                        'AND i."serve_rank" IS DISTINCT FROM v.rank',
                        [batch, values, project_id],
                    )
            else:
                items = [
                    Item(pk=item_id, serve_rank=rank)
                    for item_id, rank in zip(batch, values, strict=True)
                ]
                Item.objects.bulk_update(items, ["serve_rank"], batch_size=500)


def serving_order_set(*, project: Project, serving_order: str) -> Project:
    """Change the order regular items are served in and re-rank them from the stored
    predictions. ValidationError (field `serving_order`) for an unknown order."""
    if serving_order not in SERVING_ORDERS:
        choices = ", ".join(SERVING_ORDERS)
        raise ValidationError(
            {"serving_order": [f"Unknown serving order {serving_order!r}; use one of: {choices}."]}
        )
    project.serving_order = serving_order
    project.save(update_fields=["serving_order", "updated_at"])
    serve_rank_update(project=project)
    return project
