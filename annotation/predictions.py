"""Pre-labels (predictions): answers proposed by software, which annotators accept or correct.

Sources: an owner's own model (rows imported with items, or sent through the API), labeling
rules and the built-in model (both run by the quality app, which writes through
`predictions_replace`). Every prediction is an answer in the task type's stored form, checked by
the type like an annotation (with the item's data where the type needs it).

Which one an annotator sees (`prediction_for_item`): the owner's own model first (imported or
API), then the built-in model, then the rules; within a source the newest model version, then the
highest score. Gold items never get one (that would show the gold answer's model view).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import Item, Prediction, Project
from annotation.task_types import task_config_of, task_type_get

SHOW_ORDER = (
    Prediction.Source.IMPORT,
    Prediction.Source.API,
    Prediction.Source.MODEL,
    Prediction.Source.RULE,
)
BATCH = 2000


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


@transaction.atomic
def predictions_replace(
    *,
    project: Project,
    source: str,
    rows: Iterable[tuple[int, Any, float | None]],
    model_name: str = "",
    model_version: str = "",
) -> int:
    """Make `rows` ((item id, value, score)) the predictions of this source and model name:
    earlier ones of the same source and model name (any version) are dropped. Values are
    checked by the task type; items of other projects and gold items are refused. Returns how
    many were stored. All or nothing."""
    if source not in Prediction.Source.values:
        raise ValidationError({"source": [f"Unknown source {source!r}."]})
    task_type = task_type_get(project.task_type)
    rows = list(rows)
    item_ids = {item_id for item_id, _value, _score in rows}
    items = dict(
        Item.objects.filter(project_id=project.pk, pk__in=item_ids, is_gold=False).values_list(
            "pk", "data"
        )
    )
    objects = []
    for index, (item_id, value, score) in enumerate(rows):
        if item_id not in items:
            raise ValidationError(
                {f"rows[{index}].item": [f"Item {item_id} is not a regular item of the project."]}
            )
        data = items[item_id] if task_type.checks_item else None
        objects.append(
            Prediction(
                project=project,
                item_id=item_id,
                value=prediction_value_clean(
                    project=project, value=value, item_data=data, where=f"rows[{index}].value"
                ),
                score=score_clean(score, where=f"rows[{index}].score"),
                source=source,
                model_name=model_name,
                model_version=model_version,
            )
        )
    Prediction.objects.filter(project=project, source=source, model_name=model_name).delete()
    Prediction.objects.bulk_create(objects, batch_size=BATCH)
    return len(objects)


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
