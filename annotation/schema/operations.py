"""The operations that change a label set (rename, add, merge, split, retire, edit): checking
them, applying them to the label list, and describing them in words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from annotation.services import labels_clean

OPERATIONS_MAX = 100
FREE_HOTKEYS = "123456789abcdefghijklmnopqrtuvwxyz"  # 's' is reserved for skip
OP_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # op -> (required, optional) fields
    "rename": ({"label", "to"}, set()),
    "add": ({"label"}, set()),
    "merge": ({"labels", "into"}, set()),
    "split": ({"label", "into"}, set()),
    "retire": ({"label"}, set()),
    "edit": ({"label"}, {"hotkey", "colour"}),
}


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
