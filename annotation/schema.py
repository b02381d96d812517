"""Changing a live project's label set: versioned label schemas and migrating answers.

An owner composes operations (rename, add, merge, split, retire, edit), previews the plan
(`schema_change_plan`: the new label set, the mapping from every old label to its new value or to
None, and what happens to answers and gold) and confirms it with the plan's token
(`schema_change_apply`). Renames and merges carry answers over in place; answers using a split or
retired label are superseded (kept for the record, no longer counted) and their items reopen for
relabeling. Every answer keeps the schema version it was made under.

Agreement, consensus and pay read only current answers: `annotations_current(queryset)`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, QuerySet, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Greatest
from django.utils import timezone

from annotation.models import Annotation, Item, LabelSchemaVersion, Project
from annotation.services import labels_clean
from annotation.signals import label_schema_changed
from annotation.task_types import TaskConfig, TaskType, task_type_get
from core.audit import audit_record

OPERATIONS_MAX = 100
CHUNK = 5000
FREE_HOTKEYS = "123456789abcdefghijklmnopqrtuvwxyz"  # 's' is reserved for skip
OP_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # op -> (required, optional) fields
    "rename": ({"label", "to"}, set()),
    "add": ({"label"}, set()),
    "merge": ({"labels", "into"}, set()),
    "split": ({"label", "into"}, set()),
    "retire": ({"label"}, set()),
    "edit": ({"label"}, {"hotkey", "colour"}),
}


def annotations_current(queryset: QuerySet[Annotation]) -> QuerySet[Annotation]:
    """Only answers that count under the project's current schema (not superseded)."""
    return queryset.filter(superseded_at__isnull=True)


def schema_version_list(project: Project) -> QuerySet[LabelSchemaVersion]:
    """A project's label schema versions, newest first, with who made them."""
    return (
        LabelSchemaVersion.objects.filter(project_id=project.pk)
        .select_related("created_by")
        .order_by("-number")
    )


@dataclass
class SchemaPlan:
    """What confirming `operations` would do; `token` pins it for the confirmation."""

    from_version: int
    operations: list[dict[str, Any]]
    old_labels: list[dict[str, str]]
    labels: list[dict[str, str]]
    mapping: dict[str, str | None]  # only labels that change; absent means unchanged
    migrated_count: int = 0
    superseded_count: int = 0
    relabel_item_count: int = 0
    gold_mapped_count: int = 0
    gold_lost_item_ids: list[int] = field(default_factory=list)
    token: str = ""

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One row per old label: its new value, or None when its answers are relabeled."""
        return [
            {
                "old": label["value"],
                "new": self.mapping.get(label["value"], label["value"]),
                "relabel": label["value"] in self.mapping and self.mapping[label["value"]] is None,
                "changed": label["value"] in self.mapping,
            }
            for label in self.old_labels
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "from_version": self.from_version,
            "operations": self.operations,
            "labels": self.labels,
            "mapping": self.mapping,
            "migrated_count": self.migrated_count,
            "superseded_count": self.superseded_count,
            "relabel_item_count": self.relabel_item_count,
            "gold_mapped_count": self.gold_mapped_count,
            "gold_lost_item_ids": self.gold_lost_item_ids,
            "token": self.token,
        }


@dataclass
class _Changes:
    """The writes a plan implies, kept from computing it so applying needs no second scan."""

    migrated: list[tuple[int, dict]] = field(default_factory=list)  # (annotation id, value)
    superseded: list[int] = field(default_factory=list)
    lost_per_item: Counter[int] = field(default_factory=Counter)
    gold_mapped: list[tuple[int, dict]] = field(default_factory=list)  # (item id, gold)
    gold_lost: list[int] = field(default_factory=list)


# --- operations ------------------------------------------------------------------------------


def _text(op: dict, name: str, where: str) -> str:
    value = op.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError({f"{where}.{name}": ["Give a label value (text)."]})
    return value.strip()


def _new_label(raw: Any, where: str) -> dict[str, str]:
    """A label to create, given as "value" or {"value", "hotkey"?, "colour"?}."""
    if isinstance(raw, str):
        raw = {"value": raw}
    if not isinstance(raw, dict) or set(raw) - {"value", "hotkey", "colour"}:
        raise ValidationError({where: ["A new label is a value or {value, hotkey, colour}."]})
    value = raw.get("value")
    if not isinstance(value, str) or not value.strip():
        raise ValidationError({f"{where}.value": ["Give the new label's value."]})
    return {
        "value": value.strip(),
        "hotkey": str(raw.get("hotkey") or "").lower(),
        "colour": str(raw.get("colour") or "").lower(),
    }


class _Working:
    """The label list as operations change it, and where each original label went."""

    def __init__(self, labels: Sequence[Mapping[str, str]]) -> None:
        self.labels = [dict(label) for label in labels]
        self.origin: dict[str, str | None] = {label["value"]: label["value"] for label in labels}

    def index(self, value: str, where: str) -> int:
        for position, label in enumerate(self.labels):
            if label["value"] == value:
                return position
        raise ValidationError({where: [f"There is no label {value!r}."]})

    def free(self, value: str, where: str) -> None:
        if any(label["value"] == value for label in self.labels):
            raise ValidationError({where: [f"There is already a label {value!r}."]})

    def move(self, olds: Iterable[str], new: str | None) -> None:
        olds = set(olds)
        for original, current in self.origin.items():
            if current in olds:
                self.origin[original] = new


def _rename(work: _Working, op: dict, where: str) -> None:
    old, new = _text(op, "label", where), _text(op, "to", where)
    position = work.index(old, f"{where}.label")
    work.free(new, f"{where}.to")
    work.labels[position]["value"] = new
    work.move([old], new)


def _add(work: _Working, op: dict, where: str) -> None:
    label = _new_label(op["label"], f"{where}.label")
    work.free(label["value"], f"{where}.label")
    work.labels.append(label)


def _merge(work: _Working, op: dict, where: str) -> None:
    """Into an existing label (merged or not), or a new one in the first merged label's place."""
    olds = op["labels"]
    if not isinstance(olds, list) or len(olds) < 2 or not all(isinstance(v, str) for v in olds):
        raise ValidationError({f"{where}.labels": ["Give two or more labels to merge."]})
    if len(set(olds)) != len(olds):
        raise ValidationError({f"{where}.labels": ["A label is listed twice."]})
    into = _text(op, "into", where)
    positions = [work.index(old, f"{where}.labels[{i}]") for i, old in enumerate(olds)]
    if not any(label["value"] == into for label in work.labels):
        first = min(positions)
        work.labels[first] = dict(work.labels[first], value=into)
    gone = set(olds) - {into}
    work.labels = [label for label in work.labels if label["value"] not in gone]
    work.move(olds, into)


def _split(work: _Working, op: dict, where: str) -> None:
    old = _text(op, "label", where)
    into = op["into"]
    if not isinstance(into, list) or len(into) < 2:
        raise ValidationError({f"{where}.into": ["Split into two or more new labels."]})
    new = [_new_label(raw, f"{where}.into[{i}]") for i, raw in enumerate(into)]
    position = work.index(old, f"{where}.label")
    del work.labels[position]
    for i, label in enumerate(new):
        work.free(label["value"], f"{where}.into[{i}]")
        if any(other["value"] == label["value"] for other in new[:i]):
            raise ValidationError({f"{where}.into[{i}]": ["A new label is listed twice."]})
    work.labels[position:position] = new
    work.move([old], None)


def _retire(work: _Working, op: dict, where: str) -> None:
    old = _text(op, "label", where)
    del work.labels[work.index(old, f"{where}.label")]
    work.move([old], None)


def _edit(work: _Working, op: dict, where: str) -> None:
    label = work.labels[work.index(_text(op, "label", where), f"{where}.label")]
    for name in ("hotkey", "colour"):
        if name in op:
            label[name] = str(op[name] or "").lower()


OPERATIONS = {
    "rename": _rename,
    "add": _add,
    "merge": _merge,
    "split": _split,
    "retire": _retire,
    "edit": _edit,
}


def _operations_clean(operations: Any) -> list[dict[str, Any]]:
    if not isinstance(operations, list) or not operations:
        raise ValidationError({"operations": ["Give a list of one or more operations."]})
    if len(operations) > OPERATIONS_MAX:
        raise ValidationError({"operations": [f"At most {OPERATIONS_MAX} operations."]})
    cleaned = []
    for index, op in enumerate(operations):
        where = f"operations[{index}]"
        if not isinstance(op, dict) or op.get("op") not in OP_FIELDS:
            kinds = ", ".join(OP_FIELDS)
            raise ValidationError({f"{where}.op": [f"Each operation has an 'op': one of {kinds}."]})
        required, optional = OP_FIELDS[op["op"]]
        for name in sorted(required - set(op)):
            raise ValidationError({f"{where}.{name}": ["This field is required."]})
        for name in sorted(set(op) - required - optional - {"op"}):
            raise ValidationError({f"{where}.{name}": ["Unknown field for this operation."]})
        cleaned.append(dict(op))
    return cleaned


def _labels_after(
    old_labels: Sequence[Mapping[str, str]], operations: list[dict[str, Any]]
) -> tuple[list[dict[str, str]], dict[str, str | None]]:
    """The label list after the operations and the mapping of every changed old label."""
    work = _Working(old_labels)
    for index, op in enumerate(operations):
        OPERATIONS[op["op"]](work, op, f"operations[{index}]")
    used = {label["hotkey"] for label in work.labels if label.get("hotkey")}
    spare = iter(key for key in FREE_HOTKEYS if key not in used)
    for label in work.labels:
        if not label.get("hotkey"):
            label["hotkey"] = next(spare, "")
    mapping = {old: new for old, new in work.origin.items() if new != old}
    return labels_clean(work.labels), mapping


# --- the plan --------------------------------------------------------------------------------


def _token(project: Project, labels: list[dict[str, str]], mapping: dict) -> str:
    canonical = json.dumps(
        [project.pk, project.schema_version, labels, mapping],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _moved(
    task_type: TaskType, value: Mapping[str, Any], mapping: Mapping[str, str | None]
) -> dict | None:
    """The answer with its labels mapped; None without a counterpart (or when malformed)."""
    try:
        return task_type.relabel(value, mapping)
    except (KeyError, TypeError, AttributeError):  # a stored value not in the type's form
        return None


def _valid(
    task_type: TaskType,
    value: dict | None,
    config: TaskConfig,
    item_data: Mapping[str, Any] | None,
) -> dict | None:
    """The value's stored form under the new configuration; None when it has none."""
    if value is None:
        return None
    try:
        return task_type.value_clean(value, config=config, item_data=item_data)
    except ValidationError:
        return None


def _ids(ids: Iterable[int]) -> Any:
    """An `__in` operand for many ids: one array parameter on PostgreSQL, not one per id."""
    ids = list(ids)
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", (ids,))
    return ids


def _chunks(rows: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _answer_changes(
    project: Project,
    task_type: TaskType,
    config: TaskConfig,
    mapping: Mapping[str, str | None],
    changes: _Changes,
) -> None:
    """What each live answer becomes. Only answers whose value changes are validated again,
    with their item's data (fetched per chunk): one the mapping leaves alone keeps labels that
    all still exist. Values come as text and are decoded and relabelled once per distinct
    value, since categorical answers repeat a handful of values over the whole project.
    """
    live = (
        annotations_current(Annotation.objects.filter(project_id=project.pk))
        .order_by("pk")
        .values_list("pk", "item_id", Cast("value", TextField()))
    )
    moved_by_text: dict[str, tuple[bool, dict | None]] = {}
    for chunk in _chunks(live.iterator(chunk_size=CHUNK)):
        changed = []
        for pk, item_id, text in chunk:
            if text not in moved_by_text:
                value = json.loads(text)
                new = _moved(task_type, value, mapping)
                moved_by_text[text] = (new != value, new)
            is_changed, new = moved_by_text[text]
            if is_changed:
                changed.append((pk, item_id, new))
        wanted = {item_id for _pk, item_id, new in changed if new is not None}
        data = dict(Item.objects.filter(pk__in=_ids(wanted)).values_list("pk", "data"))
        for pk, item_id, new in changed:
            cleaned = _valid(task_type, new, config, data.get(item_id))
            if cleaned is None:
                changes.superseded.append(pk)
                changes.lost_per_item[item_id] += 1
            else:
                changes.migrated.append((pk, cleaned))


def _gold_changes(
    project: Project,
    task_type: TaskType,
    config: TaskConfig,
    mapping: Mapping[str, str | None],
    changes: _Changes,
) -> None:
    """What each gold answer becomes; items whose gold answer is lost stop being gold."""
    gold = Item.objects.filter(project_id=project.pk, is_gold=True, gold__isnull=False)
    for pk, data, value in gold.order_by("pk").values_list("pk", "data", "gold"):
        new = _valid(task_type, _moved(task_type, value, mapping), config, data)
        if new is None:
            changes.gold_lost.append(pk)
        elif new != value:
            changes.gold_mapped.append((pk, new))


def _plan_compute(*, project: Project, operations: Any) -> tuple[SchemaPlan, _Changes]:
    task_type = task_type_get(project.task_type)
    if not task_type.needs_labels:
        raise ValidationError(
            {"operations": [f"{task_type.name} projects have no labels to change."]}
        )
    cleaned = _operations_clean(operations)
    old_labels = labels_clean(project.labels)  # colours and hotkeys filled in, as stored now
    labels, mapping = _labels_after(old_labels, cleaned)
    options = task_type.options_clean(project.task_options, labels=labels)
    config = TaskConfig(task_type=project.task_type, labels=tuple(labels), options=options)
    changes = _Changes()
    if mapping:  # adds and edits leave every answer as it is
        _answer_changes(project, task_type, config, mapping, changes)
        _gold_changes(project, task_type, config, mapping, changes)
    plan = SchemaPlan(
        from_version=project.schema_version,
        operations=cleaned,
        old_labels=old_labels,
        labels=labels,
        mapping=mapping,
        migrated_count=len(changes.migrated),
        superseded_count=len(changes.superseded),
        relabel_item_count=len(changes.lost_per_item),
        gold_mapped_count=len(changes.gold_mapped),
        gold_lost_item_ids=changes.gold_lost,
        token=_token(project, labels, mapping),
    )
    return plan, changes


def schema_change_plan(*, project: Project, operations: Any) -> SchemaPlan:
    """Preview `operations` on the project's label set: new labels, mapping, counts, token.

    Errors are keyed `operations[i].<field>` (or `labels[i]` for the resulting label set).
    """
    plan, _changes = _plan_compute(project=project, operations=operations)
    return plan


# --- applying --------------------------------------------------------------------------------


def _values_update(model: type[Annotation] | type[Item], column: str, rows: list) -> None:
    """Set a JSON column row by row: one UPDATE per chunk, from arrays on PostgreSQL."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        objects = [model(pk=pk, **{column: value}) for pk, value in rows]
        model.objects.bulk_update(objects, [column], batch_size=1000)
        return
    table = model._meta.db_table
    sql = (
        f'UPDATE "{table}" AS t SET "{column}" = v.value '  # noqa: S608 - our table and column
        "FROM unnest(%s::bigint[], %s::text[]::jsonb[]) AS v(id, value) WHERE t.id = v.id"
    )
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, size=CHUNK * 4):
            cursor.execute(sql, ([pk for pk, _v in chunk], [json.dumps(v) for _pk, v in chunk]))


def _items_reopen(lost_per_item: Mapping[int, int]) -> None:
    """Give back the slots of superseded answers so their items are served again.

    One UPDATE per distinct number of lost answers, rows taken in primary-key order.
    """
    by_count: dict[int, list[int]] = defaultdict(list)
    for item_id, lost in lost_per_item.items():
        by_count[lost].append(item_id)
    for lost, item_ids in sorted(by_count.items()):
        Item.objects.filter(pk__in=_ids(sorted(item_ids))).update(
            annotation_count=Greatest(F("annotation_count") - lost, Value(0)),
            slots_taken=Greatest(F("slots_taken") - lost, Value(0)),
        )


def _changes_write(changes: _Changes) -> None:
    now = timezone.now()
    _values_update(Annotation, "value", changes.migrated)
    if changes.superseded:
        Annotation.objects.filter(pk__in=_ids(changes.superseded)).update(superseded_at=now)
    _items_reopen(changes.lost_per_item)
    _values_update(Item, "gold", changes.gold_mapped)
    if changes.gold_lost:
        Item.objects.filter(pk__in=_ids(changes.gold_lost)).update(gold_retired=True)


@transaction.atomic
def schema_change_apply(
    *,
    project: Project,
    operations: Any,
    token: str,
    user: AbstractBaseUser | None,
    note: str = "",
) -> LabelSchemaVersion:
    """Make the confirmed plan the project's next label schema version and migrate answers.

    Locks the project row for the whole change, recomputes the plan and refuses it
    (ValidationError on `token`) unless it is the one the owner previewed. Mapped answers are
    rewritten in place (keeping their schema version); answers without a counterpart are
    superseded and their items' counters lowered so other workers relabel them; gold answers
    are relabelled, or their items retired from gold service.
    """
    locked = Project.objects.select_for_update().get(pk=project.pk)
    plan, changes = _plan_compute(project=locked, operations=operations)
    if not isinstance(token, str) or token != plan.token:
        raise ValidationError(
            {"token": ["The label set or its plan changed since the preview; preview again."]}
        )
    _changes_write(changes)
    version = LabelSchemaVersion.objects.create(
        project=locked,
        number=locked.schema_version + 1,
        labels=plan.labels,
        task_options=locked.task_options,
        operations=plan.operations,
        mapping=plan.mapping,
        note=str(note or "").strip(),
        migrated_count=plan.migrated_count,
        superseded_count=plan.superseded_count,
        created_by=user,
    )
    locked.labels = plan.labels
    locked.schema_version = version.number
    locked.save(update_fields=["labels", "schema_version", "updated_at"])
    transaction.on_commit(lambda: label_schema_changed.send(sender=Project, project_id=locked.pk))
    audit_record(
        actor=user,
        project=locked,
        action="schema.change",
        target=f"label schema v{version.number}",
        details={
            "operations": plan.operations,
            "note": version.note,
            "migrated": plan.migrated_count,
            "superseded": plan.superseded_count,
        },
    )
    project.labels, project.schema_version = locked.labels, locked.schema_version
    return version


def schema_change_from_settings(
    *, project: Project, labels: Any, user: AbstractBaseUser | None = None
) -> list[dict[str, str]]:
    """A label set edited in the project settings once answers exist: adds and hotkey or
    colour edits become a new schema version; renames and removals are refused (they need
    the Labels page's mapping). Returns the label set to store.
    """
    if not task_type_get(project.task_type).needs_labels:
        return labels  # nothing to version: the project validation checks the (empty) set
    # Normalised (colours and hotkeys filled in) so a label only differs when the owner changed it.
    old = {label["value"]: label for label in labels_clean(project.labels)}
    given = labels if isinstance(labels, list) else []
    filled = []
    for label in given:  # what the settings form leaves out keeps its current value
        label = {"value": label} if isinstance(label, str) else dict(label)
        current = old.get(str(label.get("value", "")).strip(), {})
        for name in ("hotkey", "colour"):
            if not label.get(name) and current.get(name):
                label[name] = current[name]
        filled.append(label)
    new = labels_clean(filled)
    missing = [value for value in old if value not in {label["value"] for label in new}]
    if missing:
        raise ValidationError(
            {
                "labels": [
                    "Labels in use cannot be removed or renamed here once labeling started "
                    f"({', '.join(missing)}): use the project's Labels page "
                    f"(/projects/{project.pk}/labels/), which migrates the answers."
                ]
            }
        )
    operations: list[dict[str, Any]] = []
    for label in new:
        current = old.get(label["value"])
        if current is None:
            operations.append({"op": "add", "label": label})
        elif (current["hotkey"], current["colour"]) != (label["hotkey"], label["colour"]):
            operations.append(
                {
                    "op": "edit",
                    "label": label["value"],
                    "hotkey": label["hotkey"],
                    "colour": label["colour"],
                }
            )
    if not operations:
        return list(project.labels) if [lb["value"] for lb in new] == list(old) else new
    plan = schema_change_plan(project=project, operations=operations)
    version = schema_change_apply(
        project=project,
        operations=operations,
        token=plan.token,
        user=user,
        note="Changed in the project settings.",
    )
    return list(version.labels)


def operation_describe(op: Mapping[str, Any]) -> str:
    """One operation in words, for the preview and the history."""

    def name(raw: Any) -> str:
        return str(raw.get("value", "")) if isinstance(raw, Mapping) else str(raw)

    kind = op.get("op")
    if kind == "rename":
        return f"Rename {op.get('label')} to {op.get('to')}"
    if kind == "add":
        return f"Add {name(op.get('label'))}"
    if kind == "merge":
        return f"Merge {', '.join(map(str, op.get('labels') or []))} into {op.get('into')}"
    if kind == "split":
        return f"Split {op.get('label')} into {', '.join(name(v) for v in op.get('into') or [])}"
    if kind == "retire":
        return f"Retire {op.get('label')}"
    changes = [f"{key} {op[key] or '(auto)'}" for key in ("hotkey", "colour") if key in op]
    return f"Edit {op.get('label')}: {', '.join(changes) or 'no change'}"
