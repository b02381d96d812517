"""Importing a Label Studio JSON export: its tasks become items, its annotations answers by
pseudonymous external workers, as labels collected elsewhere (see quality.label_import).

The file is Label Studio's JSON export: a list of tasks {"id", "data": {...}, "annotations":
[{"completed_by", "result": [...], "was_cancelled"}], ...}. Per task:

- `data` is the item's data, checked by the project's task type (images must be http(s) URLs).
  Items are matched by content as regular imports do (annotation.imports `data_hash`): a task
  whose data is already in the project (or earlier in the file) adds answers to that item.
- Each annotation not cancelled is one answer by the worker `completed_by` (a number, a string,
  or an object with an email or id), who becomes a pseudonymous inactive user exactly as in
  label imports. Its `result` is read back per type (the inverse of
  quality.releases.formats.ls_result): choices -> single/multi label (or a pairwise choice),
  rating -> rating, textarea -> free text (lines joined), labels + relation -> spans,
  rectanglelabels (percent of the original size, no rotation) -> boxes in pixels, pairwise
  left/right -> A/B; an empty pairwise result is a tie. The answer is then checked by the type's
  `value_clean` against the item's data. Predictions are not answers and are ignored.
- An answer already in the project by the same pseudonymous worker on the same item is skipped
  and counted, so importing a file twice does not double it.

All or nothing: problems are reported with the task's index in the list and the field path
inside it (`annotations[0].result[2].value.labels`), and nothing is written unless the whole
file is valid. Then the quality recompute is scheduled.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.imports.parsing import data_hash
from annotation.imports.rules import RowRules
from annotation.models import Annotation, Item, Project
from annotation.task_types import TaskConfig, TaskType
from quality.label_import import (
    BATCH,
    LabelImportError,
    _chunks,
    _item_counters_raise,
    _workers_get_or_create,
)
from quality.services import quality_recompute_schedule

__all__ = [
    "LabelStudioImportError",
    "LabelStudioImportResult",
    "labelstudio_import",
    "ls_value",
]

logger = logging.getLogger(__name__)

MAX_TASKS = 200_000
MAX_ERRORS = 100

Issue = dict[str, Any]  # {"task": int | None, "field": str | None, "message": str}


@dataclass(frozen=True)
class LabelStudioImportResult:
    """What a Label Studio import wrote."""

    tasks: int
    items_created: int
    items_matched: int
    workers: int
    workers_created: int
    annotations_created: int
    duplicates_skipped: int


# The file has problems; nothing was imported. `errors` lists them by task and field.
LabelStudioImportError = LabelImportError


class _ResultError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _Answer(NamedTuple):
    task: int
    worker: str
    value: dict[str, Any]

    @property
    def line(self) -> int:  # what label_import's worker helper reports problems by
        return self.task


@dataclass
class _Task:
    index: int
    data: dict[str, Any]
    digest: str
    answers: list[_Answer]


def _issue(task: int | None, field: str | None, message: str) -> Issue:
    return {"task": task, "field": field, "message": message}


# --- results -> stored answers -------------------------------------------------------------


def _of_type(results: Sequence[Any], kinds: tuple[str, ...]) -> list[tuple[int, dict]]:
    found = []
    for index, result in enumerate(results):
        if not isinstance(result, dict):
            raise _ResultError(f"result[{index}]", "A result is an object.")
        kind = result.get("type")
        if kind not in kinds:
            expected = " or ".join(repr(k) for k in kinds)
            raise _ResultError(
                f"result[{index}].type",
                f"Result type {kind!r} does not fit this project's task type; expected {expected}.",
            )
        if kind != "relation" and not isinstance(result.get("value"), dict):
            raise _ResultError(f"result[{index}].value", "The result has no value object.")
        found.append((index, result))
    return found


def _strings(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise _ResultError(where, "A list of strings is required.")
    return raw


def _one(found: list[tuple[int, dict]], key: str) -> tuple[int, Any]:
    if len(found) != 1:
        where = f"result[{found[1][0]}]" if found else "result"
        raise _ResultError(where, f"Exactly one {key!r} result is expected, found {len(found)}.")
    index, result = found[0]
    return index, result["value"].get(key)


def _choices(results: Sequence[Any]) -> tuple[int, list[str]] | None:
    found = _of_type(results, ("choices",))
    if not found:
        return None
    index, raw = _one(found, "choices")
    return index, _strings(raw, f"result[{index}].value.choices")


def _number(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _ResultError(where, "A number is required.")
    return float(raw)


def _spans(results: Sequence[Any]) -> dict[str, Any]:
    spans: list[dict[str, Any]] = []
    first_span: dict[str, int] = {}  # result id -> index of its first span
    relations = []
    for index, result in _of_type(results, ("labels", "relation")):
        if result["type"] == "relation":
            relations.append((index, result))
            continue
        value = result["value"]
        where = f"result[{index}].value"
        labels = _strings(value.get("labels"), f"{where}.labels")
        if not labels:
            raise _ResultError(f"{where}.labels", "A region needs a label.")
        for name in ("start", "end"):
            if isinstance(value.get(name), bool) or not isinstance(value.get(name), int):
                raise _ResultError(
                    f"{where}.{name}", "A character offset (an integer) is required."
                )
        if isinstance(result.get("id"), str | int):
            first_span.setdefault(str(result["id"]), len(spans))
        spans += [{"start": value["start"], "end": value["end"], "label": lb} for lb in labels]
    out_relations = []
    for index, result in relations:
        ends = []
        for name in ("from_id", "to_id"):
            key = str(result.get(name))
            if key not in first_span:
                raise _ResultError(f"result[{index}].{name}", f"No labels region has id {key!r}.")
            ends.append(first_span[key])
        labels = _strings(result.get("labels", []), f"result[{index}].labels")
        if len(labels) != 1:
            raise _ResultError(f"result[{index}].labels", "A relation needs exactly one label.")
        out_relations.append({"from": ends[0], "to": ends[1], "label": labels[0]})
    return {"spans": spans, "relations": out_relations}


def _boxes(results: Sequence[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    boxes = []
    for index, result in _of_type(results, ("rectanglelabels",)):
        value = result["value"]
        where = f"result[{index}]"
        width = result.get("original_width", data.get("width"))
        height = result.get("original_height", data.get("height"))
        size = {}
        for name, raw in (("original_width", width), ("original_height", height)):
            if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
                raise _ResultError(f"{where}.{name}", "The image size in pixels is required.")
            size[name] = raw
        if value.get("rotation", 0) not in (0, 0.0):
            raise _ResultError(f"{where}.value.rotation", "Rotated boxes are not supported.")
        percent = {n: _number(value.get(n), f"{where}.value.{n}") for n in ("x", "y")}
        percent |= {n: _number(value.get(n), f"{where}.value.{n}") for n in ("width", "height")}
        labels = _strings(value.get("rectanglelabels"), f"{where}.value.rectanglelabels")
        if not labels:
            raise _ResultError(f"{where}.value.rectanglelabels", "A box needs a label.")
        box = {
            "x": percent["x"] * size["original_width"] / 100,
            "y": percent["y"] * size["original_height"] / 100,
            "w": percent["width"] * size["original_width"] / 100,
            "h": percent["height"] * size["original_height"] / 100,
        }
        boxes += [{**box, "label": label} for label in labels]
    return {"boxes": boxes}


def _pairwise(results: Sequence[Any], config: TaskConfig) -> dict[str, Any]:
    found = _of_type(results, ("pairwise", "choices"))
    if not found:
        return {"choice": "tie"}  # Label Studio cannot express a tie: it leaves no result
    index, result = found[0]
    if len(found) > 1:
        raise _ResultError(f"result[{found[1][0]}]", "Exactly one result is expected.")
    if result["type"] == "choices":
        choices = _strings(result["value"].get("choices"), f"result[{index}].value.choices")
        if len(choices) != 1:
            raise _ResultError(f"result[{index}].value.choices", "Exactly one choice is expected.")
        return {"choice": choices[0]}
    selected = result["value"].get("selected")
    if selected not in ("left", "right"):
        raise _ResultError(f"result[{index}].value.selected", "Must be 'left' or 'right'.")
    return {"choice": "A" if selected == "left" else "B"}


def ls_value(
    results: Any, *, task_type: TaskType, config: TaskConfig, data: Mapping[str, Any]
) -> dict[str, Any]:
    """A Label Studio result list as an answer in the type's stored form (not yet cleaned).

    Raises ValidationError keyed by the path inside the annotation (`result[2].value.labels`).
    """
    if not isinstance(results, list):
        raise ValidationError({"result": ["A list of results is required."]})
    key = task_type.key
    try:
        if key == "single_label":
            found = _choices(results)
            if found is None or len(found[1]) != 1:
                where = "result" if found is None else f"result[{found[0]}].value.choices"
                raise _ResultError(where, "Exactly one choice is expected.")
            return {"label": found[1][0]}
        if key == "multi_label":
            found = _choices(results)
            return {"labels": [] if found is None else list(found[1])}
        if key == "rating":
            index, rating = _one(_of_type(results, ("rating",)), "rating")
            if isinstance(rating, bool) or not isinstance(rating, int | float):
                raise _ResultError(f"result[{index}].value.rating", "A whole number is required.")
            if rating != int(rating):
                raise _ResultError(f"result[{index}].value.rating", "A whole number is required.")
            return {"rating": int(rating)}
        if key == "free_text":
            found = _of_type(results, ("textarea",))
            if not found:
                return {"text": ""}
            index, lines = _one(found, "text")
            return {"text": "\n".join(_strings(lines, f"result[{index}].value.text"))}
        if key == "spans":
            return _spans(results)
        if key == "boxes":
            return _boxes(results, data)
        if key == "pairwise":
            return _pairwise(results, config)
    except _ResultError as problem:
        raise ValidationError({problem.field: [problem.message]}) from None
    raise ValidationError({"result": [f"Task type {key!r} has no Label Studio form."]})


# --- reading -----------------------------------------------------------------------------------


def _messages(exc: ValidationError) -> list[tuple[str | None, str]]:
    if hasattr(exc, "error_dict"):
        return [(key, message) for key, errors in exc.message_dict.items() for message in errors]
    return [(None, message) for message in exc.messages]


def _answer_field(key: str | None) -> str:
    """An error key of `ls_value` ("result[2].value") or of the type's `value_clean`
    ("value.spans[0].end", or a bare "label") as a path inside the annotation."""
    if not key or key == "__all__":
        return "value"
    if key.startswith(("value", "result")):
        return key
    return f"value.{key}"


def _worker(raw: Any) -> str | None:
    if isinstance(raw, dict):
        raw = raw.get("email") or raw.get("id")
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return str(raw)
    return raw.strip() or None if isinstance(raw, str) else None


def _load(file: IO[bytes]) -> tuple[list[Any] | None, list[Issue]]:
    size = getattr(file, "size", None)
    limit = settings.ASSAY_IMPORT_MAX_BYTES
    if size is not None and size > limit:
        return None, [_issue(None, "file", f"The file is larger than {limit / 2**20:.1f} MB.")]
    if hasattr(file, "seek"):
        file.seek(0)
    body = file.read(limit + 1)
    if len(body) > limit:
        return None, [_issue(None, "file", f"The file is larger than {limit / 2**20:.1f} MB.")]
    if not body.strip():
        return None, [_issue(None, "file", "The file is empty.")]
    try:
        tasks = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return None, [_issue(None, "file", f"The file is not UTF-8 (byte {exc.start + 1}).")]
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        return None, [_issue(None, "file", f"Not JSON: {exc.msg} at {where}.")]
    if not isinstance(tasks, list):
        return None, [_issue(None, "file", "A Label Studio export is a JSON list of tasks.")]
    if not tasks:
        return None, [_issue(None, "file", "The file has no tasks.")]
    if len(tasks) > MAX_TASKS:
        return None, [_issue(None, "file", f"More than {MAX_TASKS:,} tasks; split the file.")]
    return tasks, []


def _task_parse(index: int, raw: Any, rules: RowRules) -> tuple[_Task | None, list[Issue]]:
    if not isinstance(raw, dict):
        return None, [_issue(index, None, "A task is an object with 'data'.")]
    data = raw.get("data")
    if not isinstance(data, dict):
        return None, [_issue(index, "data", "The task has no 'data' object.")]
    cleaned, problems = rules.data_issues(dict(data), index)
    if cleaned is None or problems:
        return None, [
            _issue(index, f"data.{p['field']}" if p["field"] else "data", p["message"])
            for p in problems
        ]
    issues: list[Issue] = []
    answers: list[_Answer] = []
    annotations = raw.get("annotations", [])
    if not isinstance(annotations, list):
        return None, [_issue(index, "annotations", "A list of annotations is required.")]
    for position, annotation in enumerate(annotations):
        where = f"annotations[{position}]"
        if not isinstance(annotation, dict):
            issues.append(_issue(index, where, "An annotation is an object."))
            continue
        if annotation.get("was_cancelled") is True:
            continue
        worker = _worker(annotation.get("completed_by"))
        if worker is None:
            issues.append(_issue(index, f"{where}.completed_by", "The annotator is missing."))
            continue
        try:
            value = ls_value(
                annotation.get("result"),
                task_type=rules.task_type,
                config=rules.config,
                data=cleaned,
            )
            value = rules.task_type.value_clean(value, config=rules.config, item_data=cleaned)
        except ValidationError as exc:
            issues += [
                _issue(index, f"{where}.{_answer_field(key)}", message)
                for key, message in _messages(exc)
            ]
            continue
        answers.append(_Answer(task=index, worker=worker, value=value))
    if issues:
        return None, issues
    return _Task(index=index, data=cleaned, digest=data_hash(cleaned), answers=answers), []


def _parse(file: IO[bytes], rules: RowRules) -> tuple[list[_Task], list[Issue]]:
    raw_tasks, errors = _load(file)
    if raw_tasks is None:
        return [], errors
    tasks: list[_Task] = []
    hidden = 0
    for index, raw in enumerate(raw_tasks):
        task, issues = _task_parse(index, raw, rules)
        if task is not None:
            tasks.append(task)
        for issue in issues:
            if len(errors) < MAX_ERRORS:
                errors.append(issue)
            else:
                hidden += 1
    if hidden:
        errors.append(_issue(None, None, f"…and {hidden} more problems not shown."))
    return tasks, errors


# --- writing -------------------------------------------------------------------------------------


def labelstudio_import(
    *, project: Project, file: IO[bytes], uploaded_by: AbstractBaseUser
) -> LabelStudioImportResult:
    """Validate a Label Studio JSON export, then write its items, workers and answers.

    Raises LabelStudioImportError (nothing written) listing every problem by task and field.
    Holds the project's row lock while writing, as label imports do. Side effect: schedules
    the project's quality recompute after commit. Callers check that `uploaded_by` owns it.
    """
    tasks, errors = _parse(file, RowRules(project))
    if errors:
        raise LabelStudioImportError(errors)
    answers = [answer for task in tasks for answer in task.answers]
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        try:
            workers, workers_created = (
                _workers_get_or_create(project=project, rows=answers) if answers else ({}, 0)
            )
        except LabelImportError as exc:
            raise LabelStudioImportError(
                [_issue(e["line"], "annotations.completed_by", e["message"]) for e in exc.errors]
            ) from None
        item_ids, created = _items_get_or_create(project=project, tasks=tasks)
        written, skipped = _answers_write(
            project=project, tasks=tasks, item_ids=item_ids, workers=workers
        )
        quality_recompute_schedule(project_id=project.pk)
    logger.info(
        "Label Studio import into project %s by user %s: %s answers, %s skipped",
        project.pk,
        uploaded_by.pk,
        written,
        skipped,
    )
    return LabelStudioImportResult(
        tasks=len(tasks),
        items_created=created,
        items_matched=len(set(item_ids.values())) - created,
        workers=len(workers),
        workers_created=workers_created,
        annotations_created=written,
        duplicates_skipped=skipped,
    )


def _items_get_or_create(*, project: Project, tasks: list[_Task]) -> tuple[dict[str, int], int]:
    """Map each task's content hash to an item id, creating the missing items."""
    digests = list(dict.fromkeys(task.digest for task in tasks))
    known: dict[str, int] = {}
    for chunk in _chunks(digests):
        for pk, digest in (
            Item.objects.filter(project=project, content_hash__in=chunk)
            .order_by("pk")
            .values_list("pk", "content_hash")
        ):
            known.setdefault(digest, pk)
    first: dict[str, _Task] = {}
    for task in tasks:
        if task.digest not in known:
            first.setdefault(task.digest, task)
    created = Item.objects.bulk_create(
        [
            Item(project=project, data=task.data, content_hash=digest, target=project.overlap)
            for digest, task in first.items()
        ],
        batch_size=BATCH,
    )
    known.update((digest, item.pk) for digest, item in zip(first, created, strict=True))
    return known, len(created)


def _answers_write(
    *,
    project: Project,
    tasks: list[_Task],
    item_ids: dict[str, int],
    workers: dict[str, int],
) -> tuple[int, int]:
    """Insert the answers not already in the project and raise the item counters."""
    planned = [
        (item_ids[task.digest], workers[answer.worker], answer.value)
        for task in tasks
        for answer in task.answers
    ]
    present: set[tuple[int, int]] = set()
    item_list = sorted({item for item, _author, _value in planned})
    author_list = sorted({author for _item, author, _value in planned})
    for chunk in _chunks(item_list):
        present.update(
            Annotation.objects.filter(
                project=project, item_id__in=chunk, author_id__in=author_list
            ).values_list("item_id", "author_id")
        )
    fresh = [entry for entry in planned if entry[:2] not in present]
    _item_counters_raise(Counter(item for item, _author, _value in fresh))
    Annotation.objects.bulk_create(
        [
            Annotation(
                project=project,
                item_id=item,
                author_id=author,
                value=value,
                schema_version=project.schema_version,
            )
            for item, author, value in fresh
        ],
        batch_size=BATCH,
    )
    return len(fresh), len(planned) - len(fresh)
