"""Pre-labels (predictions): answers proposed by software, which annotators accept or correct.

Sources: an owner's own model (rows imported with items, or sent through the API), labeling
rules and the built-in model (both run by the quality app, which writes through
`predictions_replace`). Every prediction is an answer in the task type's stored form, checked by
the type like an annotation (with the item's data where the type needs it).

Replacing: `predictions_replace` (the API's `predictions_upload`, rules, the built-in model)
makes one upload the whole set of its source and model name, dropping that model name's earlier
predictions of every version; an import replaces, item by item, the imported predictions of the
same model name (annotation.imports.predicting).

Which one an annotator sees (`prediction_for_item`): the owner's own model first (imported or
API), then the built-in model, then the rules; within a source the newest model version, then the
highest score. Gold items never get one (that would show the gold answer's model view).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Max, QuerySet

from annotation.models import Item, Prediction, Project
from annotation.task_types import task_config_of, task_type_get

SHOW_ORDER = (
    Prediction.Source.IMPORT,
    Prediction.Source.API,
    Prediction.Source.MODEL,
    Prediction.Source.RULE,
)
# Short names of the sources for narrow tables (the owner's overview).
SOURCE_SHORT = {
    Prediction.Source.IMPORT: "Imported",
    Prediction.Source.API: "API",
    Prediction.Source.MODEL: "Built-in model",
    Prediction.Source.RULE: "Rules",
}
BATCH = 2000
MAX_ERRORS = 50  # fields reported when rows are refused; the rest are not checked


def prediction_value_clean(
    *, project: Project, value: Any, item_data: dict | None = None, where: str = "value"
) -> dict:
    """A prediction's value in stored form; ValidationError keyed under `where` otherwise."""
    task_type = task_type_get(project.task_type)
    try:
        return task_type.value_clean(value, config=task_config_of(project), item_data=item_data)
    except ValidationError as error:
        raise ValidationError(
            {
                f"{where}.{key}" if not key.startswith("value") else f"{where}{key[5:]}": messages
                for key, messages in error.message_dict.items()
            }
        ) from None


def score_clean(score: Any, *, where: str = "score") -> float | None:
    """A prediction's score: None, or a number between 0 and 1."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise ValidationError({where: ["A score is a number between 0 and 1."]})
    return float(score)


NOT_ON_GOLD = "A gold item cannot carry a prediction."


@transaction.atomic
def predictions_replace(
    *,
    project: Project,
    source: str,
    rows: Iterable[tuple[int, Any, float | None]],
    model_name: str = "",
    model_version: str = "",
    where: str = "rows",
) -> int:
    """Make `rows` ((item id, value, score)) the predictions of this source and model name:
    earlier ones of the same source and model name (any version) are dropped. Values are
    checked by the task type; items of other projects, gold items and an item given twice are
    refused, with every error keyed `<where>[index].<field>`. Returns how many were stored.
    All or nothing: nothing changes when any row is refused."""
    if source not in Prediction.Source.values:
        raise ValidationError({"source": [f"Unknown source {source!r}."]})
    task_type = task_type_get(project.task_type)
    rows = list(rows)
    item_ids = {item_id for item_id, _value, _score in rows if isinstance(item_id, int)}
    items = {
        pk: (data, is_gold)
        for pk, data, is_gold in Item.objects.filter(
            project_id=project.pk, pk__in=item_ids
        ).values_list("pk", "data", "is_gold")
    }
    objects: list[Prediction] = []
    errors: dict[str, list[str]] = {}
    seen: set[int] = set()
    for index, (item_id, value, score) in enumerate(rows):
        if len(errors) >= MAX_ERRORS:
            break
        try:
            objects.append(
                _prediction_build(
                    project=project,
                    item=_item_checked(item_id, items, seen, where=f"{where}[{index}].item"),
                    value=value,
                    score=score,
                    checks_item=task_type.checks_item,
                    where=f"{where}[{index}]",
                )
            )
        except ValidationError as error:
            errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    for prediction in objects:
        prediction.source, prediction.model_name = source, model_name
        prediction.model_version = model_version
    Prediction.objects.filter(project=project, source=source, model_name=model_name).delete()
    Prediction.objects.bulk_create(objects, batch_size=BATCH)
    return len(objects)


UPLOAD_KEYS = ("item", "value", "score")
MAX_UPLOAD = 50_000  # predictions per upload


def predictions_upload(
    *, project: Project, model_name: str, model_version: str, predictions: list[Any]
) -> int:
    """Store an owner's model's predictions sent through the API ({"item", "value", "score"?}
    each) with source "api": they replace every earlier API prediction of the same model name
    (any version). Errors are keyed `predictions[index].<field>`. Returns how many were stored.
    """
    if not model_name.strip():
        raise ValidationError({"model_name": ["Name the model the predictions come from."]})
    if not predictions:
        # An empty upload would silently delete the model's predictions: refuse it.
        raise ValidationError({"predictions": ["Send at least one prediction."]})
    if len(predictions) > MAX_UPLOAD:
        message = f"At most {MAX_UPLOAD:,} predictions per request; send the rest separately."
        raise ValidationError({"predictions": [message]})
    errors: dict[str, list[str]] = {}
    for index, entry in enumerate(predictions):
        where = f"predictions[{index}]"
        if not isinstance(entry, dict):
            errors[where] = ['A prediction is an object: {"item", "value", "score"}.']
        elif unknown := sorted(set(entry) - set(UPLOAD_KEYS)):
            errors[f"{where}.{unknown[0]}"] = [f"Unknown key; use {', '.join(UPLOAD_KEYS)}."]
        elif missing := [key for key in ("item", "value") if key not in entry]:
            errors[f"{where}.{missing[0]}"] = ["This field is required."]
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ValidationError(errors)
    return predictions_replace(
        project=project,
        source=Prediction.Source.API,
        rows=[(entry["item"], entry["value"], entry.get("score")) for entry in predictions],
        model_name=model_name.strip(),
        model_version=model_version.strip(),
        where="predictions",
    )


def _item_checked(
    item_id: Any, items: dict[int, tuple[dict, bool]], seen: set[int], *, where: str
) -> tuple[int, dict]:
    """(item id, data) of a regular item of the project given once; ValidationError otherwise."""
    if isinstance(item_id, bool) or item_id not in items:
        raise ValidationError({where: [f"Item {item_id!r} is not an item of this project."]})
    data, is_gold = items[item_id]
    if is_gold:
        raise ValidationError({where: [f"{NOT_ON_GOLD} Item {item_id} is a gold item."]})
    if item_id in seen:
        raise ValidationError({where: [f"Item {item_id} is given twice."]})
    seen.add(item_id)
    return item_id, data


def _prediction_build(
    *,
    project: Project,
    item: tuple[int, dict],
    value: Any,
    score: Any,
    checks_item: bool,
    where: str,
) -> Prediction:
    """An unsaved prediction of `item` ((id, data)), its value and score checked."""
    item_id, data = item
    errors: dict[str, list[str]] = {}
    cleaned_value = cleaned_score = None
    try:
        cleaned_value = prediction_value_clean(
            project=project,
            value=value,
            item_data=data if checks_item else None,
            where=f"{where}.value",
        )
    except ValidationError as error:
        errors.update(error.message_dict)
    try:
        cleaned_score = score_clean(score, where=f"{where}.score")
    except ValidationError as error:
        errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    return Prediction(project=project, item_id=item_id, value=cleaned_value, score=cleaned_score)


def prediction_for_item(*, item: Item) -> Prediction | None:
    """The pre-label an annotator is shown for `item` (None for gold items or none at all)."""
    if item.is_gold:
        return None
    candidates = list(Prediction.objects.filter(item_id=item.pk))
    if not candidates:
        return None
    rank = {source: index for index, source in enumerate(SHOW_ORDER)}
    return min(
        candidates,
        key=lambda p: (rank.get(p.source, len(rank)), -p.pk, -(p.score or 0.0)),
    )


def prediction_list(
    *, project: Project, source: str | None = None, model_name: str | None = None
) -> QuerySet[Prediction]:
    """The project's predictions, oldest first, optionally of one source and one model name."""
    predictions = Prediction.objects.filter(project=project)
    if source:
        predictions = predictions.filter(source=source)
    if model_name is not None:
        predictions = predictions.filter(model_name=model_name)
    return predictions.order_by("id")


def prediction_summary(*, project: Project) -> list[dict[str, Any]]:
    """How many predictions the project holds per source, model name and version (one query):
    [{"source", "source_label", "model_name", "model_version", "count", "latest_at"}], in the
    order annotators are shown them (SHOW_ORDER), then by model name and version."""
    rows = (
        Prediction.objects.filter(project=project)
        .values("source", "model_name", "model_version")
        .annotate(count=Count("id"), latest_at=Max("created_at"))
        .order_by()
    )
    rank = {source: index for index, source in enumerate(SHOW_ORDER)}
    summary = [
        {**row, "source_label": SOURCE_SHORT.get(row["source"], row["source"])} for row in rows
    ]
    return sorted(
        summary,
        key=lambda row: (
            rank.get(row["source"], len(rank)),
            row["model_name"],
            row["model_version"],
        ),
    )
