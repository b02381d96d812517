"""Bounding boxes: labelled rectangles drawn on an image item.

Stored answer: {"boxes": [{"x", "y", "w", "h", "label"}, ...]} in image pixels, (x, y) the top-left
corner, numbers rounded to 2 decimals (ints when whole), boxes sorted by (label, x, y, w, h) and
without duplicates, so equal answers compare equal. Options: allow_none (an empty list is an
answer, default true) and min_size (smallest accepted w and h in pixels, default 1).

Agreement (`mean_iou`, `box_f1_50`) matches each pair of annotators' boxes one-to-one (Hungarian
method on IoU, same label required). A pair of annotators who both drew nothing is neutral: it
adds no match and no miss. When no boxes were drawn at all across the compared pairs, both
figures are 1.0 (everyone agrees there is nothing to box).

Consensus clusters the boxes of the item's annotators: annotators are taken in turn (heaviest
first) and their boxes are matched one-to-one (Hungarian) to the current clusters' weighted mean
boxes, a match needing IoU >= 0.5 and same-label matches preferred; unmatched boxes open new
clusters. So each annotator puts at most one box in a cluster.
"""

from __future__ import annotations

import json
import math
import posixpath
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import IO, Any
from urllib.parse import urlsplit

import numpy as np
from django.core.exceptions import ValidationError
from scipy.optimize import linear_sum_assignment

from annotation.task_types._common import weighted_plurality
from annotation.task_types.base import (
    Consensus,
    ExportForm,
    ExportRow,
    OptionSpec,
    TaskConfig,
    TaskType,
    Vote,
)

MAX_BOXES = 500
MATCH_IOU = 0.5  # IoU a consensus cluster and a box must reach to be matched; also box_f1_50's
_COORDS = ("x", "y", "w", "h")
_DEFAULTS: dict[str, Any] = {"allow_none": True, "min_size": 1}


def _number(value: Any) -> float | None:
    """A finite int or float (not bool) as float; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _stored(number: float, digits: int = 2) -> int | float:
    """A number in stored form: rounded (2 decimals for coordinates), an int when whole."""
    rounded = round(float(number), digits)
    return int(rounded) if rounded.is_integer() else rounded


def _box_clean(
    raw: Any, *, where: str, labels: Sequence[str], min_size: float, size: tuple[int, int] | None
) -> tuple[dict | None, dict[str, list[str]]]:
    """One box in stored form, or None and its errors keyed by field path."""
    if not isinstance(raw, dict):
        return None, {where: ["A box is an object with x, y, w, h and label."]}
    errors: dict[str, list[str]] = {}
    for name in sorted(set(raw) - {*_COORDS, "label"}):
        errors[f"{where}.{name}"] = ["Unknown field."]
    box: dict[str, Any] = {}
    for name in _COORDS:
        number = _number(raw.get(name))
        if number is None:
            errors[f"{where}.{name}"] = ["A finite number of pixels is required."]
        else:
            box[name] = _stored(number)
    for name in ("w", "h"):
        if name in box and box[name] <= 0:
            errors[f"{where}.{name}"] = ["Must be greater than 0 (no zero-area boxes)."]
        elif name in box and box[name] < min_size:
            errors[f"{where}.{name}"] = [f"At least {_stored(min_size)} pixels (min_size)."]
    for name in ("x", "y"):
        if name in box and box[name] < 0:
            errors[f"{where}.{name}"] = ["The box starts outside the image (negative)."]
    if size is not None and not any(f"{where}.{name}" in errors for name in _COORDS):
        errors.update({f"{where}.{name}": [error] for name, error in _overflow(box, size).items()})
    label = raw.get("label")
    if not isinstance(label, str) or label not in labels:
        errors[f"{where}.label"] = [f"Unknown label {label!r}; use one of: {', '.join(labels)}."]
    box["label"] = label
    return (None, errors) if errors else (box, {})


def _overflow(box: Mapping[str, Any], size: tuple[int, int]) -> dict[str, str]:
    """Errors of a box (valid numbers, x, y >= 0) that ends past the image's width or height."""
    errors = {}
    for start, extent, side, limit in (("x", "w", "width", size[0]), ("y", "h", "height", size[1])):
        # Whole hundredths are exact where float sums are not (99.99 + 0.01).
        if round(box[start] * 100) + round(box[extent] * 100) > limit * 100:
            errors[extent] = f"The box ends outside the image ({side} {limit})."
    return errors


def _sort_key(box: Mapping[str, Any]) -> tuple:
    return (box["label"], box["x"], box["y"], box["w"], box["h"])


def _corners(boxes: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """An (n, 4) array of x1, y1, x2, y2."""
    if not boxes:
        return np.zeros((0, 4))
    array = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in boxes], dtype=float)
    array[:, 2:] += array[:, :2]
    return array


def iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of two (n, 4) corner arrays."""
    left = np.maximum(first[:, None, 0], second[None, :, 0])
    top = np.maximum(first[:, None, 1], second[None, :, 1])
    right = np.minimum(first[:, None, 2], second[None, :, 2])
    bottom = np.minimum(first[:, None, 3], second[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_first = (first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1])
    area_second = (second[:, 2] - second[:, 0]) * (second[:, 3] - second[:, 1])
    union = area_first[:, None] + area_second[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _pair_matches(first: Sequence[Mapping], second: Sequence[Mapping]) -> list[float]:
    """IoUs (> 0) of a one-to-one same-label matching of two answers' boxes maximising IoU."""
    if not first or not second:
        return []
    iou = iou_matrix(_corners(first), _corners(second))
    same = np.array([[a["label"] == b["label"] for b in second] for a in first])
    iou = np.where(same, iou, 0.0)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [float(iou[r, c]) for r, c in zip(rows, cols, strict=True) if iou[r, c] > 0]


def _dumps(obj: Any) -> bytes:
    """Compact JSON with sorted keys: the same input gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _coco_image(row: ExportRow) -> dict[str, Any]:
    """The COCO image entry of a row; its id is the item id."""
    data = row.data
    reference = str(data.get("image", ""))
    path = urlsplit(reference).path if reference.startswith(("http://", "https://")) else reference
    width, height = data.get("width"), data.get("height")
    if not reference or not isinstance(width, int) or not isinstance(height, int):
        raise ValueError(f"Item {row.item_id}: data needs image, width and height.")
    return {
        "id": row.item_id,
        "file_name": posixpath.basename(path),
        "width": width,
        "height": height,
    }


class CocoExport(ExportForm):
    """COCO detection JSON of the released items that have a consensus value."""

    def write(self, rows: Iterable[ExportRow], out: IO[bytes], config: TaskConfig) -> None:
        """Stream one JSON document: images as they come, annotations spooled, then appended.

        Items without a consensus value are left out (unknown is not "no objects"); the image
        id is the item id, annotation ids count from 1 in row order.
        """
        categories = {label: index for index, label in enumerate(config.label_values, start=1)}
        info = {"description": "Assay bounding boxes (COCO object detection)"}
        out.write(b'{"info":' + _dumps(info) + b',"categories":')
        out.write(_dumps([{"id": i, "name": name} for name, i in categories.items()]))
        out.write(b',"images":[')
        images = annotations = 0
        with tempfile.TemporaryFile() as spool:
            for row in rows:
                if row.value is None:
                    continue
                image = _coco_image(row)
                out.write((b"," if images else b"") + _dumps(image))
                images += 1
                for box in row.value.get("boxes", ()):
                    if box["label"] not in categories:
                        raise ValueError(
                            f"Item {row.item_id}: label {box['label']!r} is not in the label set."
                        )
                    annotations += 1
                    entry = {
                        "id": annotations,
                        "image_id": image["id"],
                        "category_id": categories[box["label"]],
                        "bbox": [box["x"], box["y"], box["w"], box["h"]],
                        "area": _stored(box["w"] * box["h"], 4),  # exact for 2-decimal sides
                        "iscrowd": 0,
                    }
                    spool.write((b"," if annotations > 1 else b"") + _dumps(entry))
            out.write(b'],"annotations":[')
            spool.seek(0)
            shutil.copyfileobj(spool, out)
        out.write(b"]}")


class Boxes(TaskType):
    key = "boxes"
    name = "Bounding boxes"
    description = "Draw labelled boxes around the objects in an image."
    media = ("image",)
    categorical = False
    checks_item = True
    needs_labels = True
    widget = "annotation/widgets/boxes.html"
    option_fields = (
        OptionSpec("allow_none", bool, True, "Allow no box", "An image with no box is an answer."),
        OptionSpec(
            "min_size", float, 1, "Smallest box side (pixels)", "Greater than 0.", minimum=0
        ),
    )
    export_forms = (
        CocoExport(
            key="coco",
            name="COCO detection JSON",
            filename="coco.json",
            content_type="application/json",
        ),
    )

    def options_clean(self, options: Any, *, labels: Sequence[Mapping[str, str]]) -> dict:
        """allow_none (bool, default true) and min_size (pixels > 0, default 1)."""
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ValidationError({"options": ["Options are an object."]})
        errors = {
            f"options.{name}": ["Unknown option."] for name in sorted(set(options) - {*_DEFAULTS})
        }
        cleaned = {**_DEFAULTS, **options}
        if not isinstance(cleaned["allow_none"], bool):
            errors["options.allow_none"] = ["'allow_none' is true or false."]
        min_size = _number(cleaned["min_size"])
        cleaned["min_size"] = None if min_size is None else _stored(min_size)
        if cleaned["min_size"] is None or cleaned["min_size"] <= 0:
            errors["options.min_size"] = ["A number of pixels greater than 0 (2 decimals)."]
        if errors:
            raise ValidationError(errors)
        return cleaned

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        """{"image": storage path or URL, "width": px >= 1, "height": px >= 1}, all required."""
        if not isinstance(data, dict):
            raise ValidationError({"data": ["An item's data is a JSON object."]})
        errors: dict[str, list[str]] = {}
        image = data.get("image")
        if not isinstance(image, str) or not image.strip():
            errors["data.image"] = ["'image' is a non-empty storage path or URL."]
        for name in ("width", "height"):
            size = data.get(name)
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                errors[f"data.{name}"] = [f"'{name}' is a whole number of pixels, at least 1."]
        if errors:
            raise ValidationError(errors)
        return data

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        """The stored form; errors keyed like `value.boxes[3].w` (index as submitted).

        Boxes equal after rounding are kept once (a label merge can make two boxes equal).
        """
        if not isinstance(value, dict) or not isinstance(value.get("boxes"), list):
            raise ValidationError({"value.boxes": ["An answer is {'boxes': [...]}."]})
        extra = sorted(set(value) - {"boxes"})
        if extra:
            raise ValidationError({f"value.{name}": ["Unknown field."] for name in extra})
        raw_boxes = value["boxes"]
        options = {**_DEFAULTS, **config.options}
        if len(raw_boxes) > MAX_BOXES:
            raise ValidationError({"value.boxes": [f"At most {MAX_BOXES} boxes per image."]})
        if not raw_boxes and not options["allow_none"]:
            raise ValidationError({"value.boxes": ["Draw at least one box."]})
        width, height = (item_data or {}).get("width"), (item_data or {}).get("height")
        size = (width, height) if isinstance(width, int) and isinstance(height, int) else None
        boxes: list[dict] = []
        errors: dict[str, list[str]] = {}
        for index, raw in enumerate(raw_boxes):
            box, box_errors = _box_clean(
                raw,
                where=f"value.boxes[{index}]",
                labels=config.label_values,
                min_size=float(options["min_size"]),
                size=size,
            )
            errors.update(box_errors)
            if box is not None:
                boxes.append(box)
        if errors:
            raise ValidationError(errors)
        unique = {_sort_key(box): box for box in boxes}
        return {"boxes": [unique[key] for key in sorted(unique)]}

    def summary(self, value: Mapping[str, Any] | None) -> str:
        """Boxes per label, like "2 boxes: car ×1, person ×1"."""
        if value is None:
            return ""
        counts = Counter(box["label"] for box in value.get("boxes", ()))
        if not counts:
            return "no boxes"
        total = sum(counts.values())
        parts = ", ".join(f"{label} ×{count}" for label, count in sorted(counts.items()))
        return f"{total} box{'es' if total != 1 else ''}: {parts}"

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """mean_iou (over matched pairs with IoU > 0) and box_f1_50 (micro F1 at IoU >= 0.5)."""
        compared = False
        ious: list[float] = []
        hits = drawn = 0  # matches at IoU >= 0.5; boxes of both sides over all pairs
        for votes in answers.values():
            for first, second in combinations(votes, 2):
                compared = True
                a, b = first.value.get("boxes", []), second.value.get("boxes", [])
                matched = _pair_matches(a, b)
                ious.extend(matched)
                hits += sum(iou >= MATCH_IOU for iou in matched)
                drawn += len(a) + len(b)
        if not compared:
            return {"mean_iou": None, "box_f1_50": None}
        if not drawn:  # every compared pair agrees that there is nothing to box
            return {"mean_iou": 1.0, "box_f1_50": 1.0}
        return {
            "mean_iou": float(np.mean(ious)) if ious else 0.0,
            "box_f1_50": 2 * hits / drawn,
        }

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """Boxes kept by more than half the weight, each with its weighted majority label.

        support: mean over clusters of the weight share behind the decision (the kept label's
        annotators, or those who did not draw a dropped box); 1.0 when nobody drew anything.
        None when there is no weight, or nothing is kept and empty answers are not allowed.
        """
        total = sum(float(vote.weight) for vote in votes)
        if not votes or total <= 0:
            return None
        clusters = _clusters(votes)
        kept: list[dict] = []
        shares: list[float] = []
        for members in clusters:
            present = sum(weight for weight, _ in members)
            winner = None
            if present > total / 2:
                winner = weighted_plurality((box["label"], weight) for weight, box in members)
            if winner is None:
                shares.append((total - present) / total)
                continue
            label = winner[0]
            backing = [(weight, box) for weight, box in members if box["label"] == label]
            kept.append(_mean_box(backing, label=label))
            shares.append(sum(weight for weight, _ in backing) / total)
        if not kept and not {**_DEFAULTS, **config.options}["allow_none"]:
            return None
        unique = {_sort_key(box): box for box in kept}  # two clusters may end on the same box
        return Consensus(
            value={"boxes": [unique[key] for key in sorted(unique)]},
            support=float(np.mean(shares)) if shares else 1.0,
        )


def _clusters(votes: Sequence[Vote]) -> list[list[tuple[float, Mapping[str, Any]]]]:
    """Clusters of (weight, box); annotators in turn (heaviest first, then by worker id)."""
    clusters: list[list[tuple[float, Mapping[str, Any]]]] = []
    means = np.zeros((0, 4))
    for vote in sorted(votes, key=lambda v: (-float(v.weight), v.worker_id)):
        boxes = sorted(vote.value.get("boxes", []), key=_sort_key)
        if not boxes:
            continue
        weight = float(vote.weight)
        matched: dict[int, int] = {}
        if clusters:
            iou = iou_matrix(_corners(boxes), means)
            labelled = np.array(
                [[any(b["label"] == m["label"] for _, m in c) for c in clusters] for b in boxes]
            )
            # A same-label match outweighs any IoU gain; pairs under the threshold score 0, so
            # the forced full assignment is a maximum-weight matching once they are dropped.
            score = np.where(iou >= MATCH_IOU, iou + labelled, 0.0)
            rows, cols = linear_sum_assignment(score, maximize=True)
            matched = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if score[r, c] > 0}
        for index, box in enumerate(boxes):
            if index in matched:
                clusters[matched[index]].append((weight, box))
            else:
                clusters.append([(weight, box)])
        means = np.array([_weighted_corners(members) for members in clusters])
    return clusters


def _weighted_corners(members: Sequence[tuple[float, Mapping[str, Any]]]) -> np.ndarray:
    corners = _corners([box for _, box in members])
    weights = np.array([weight for weight, _ in members])
    if weights.sum() <= 0:
        return corners.mean(axis=0)
    return np.average(corners, axis=0, weights=weights)


def _mean_box(members: Sequence[tuple[float, Mapping[str, Any]]], *, label: str) -> dict:
    """The weighted mean box in stored form; corners averaged so it stays inside the image."""
    x1, y1, x2, y2 = (round(float(c) * 100) for c in _weighted_corners(members))
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    return {
        "x": _stored(x1 / 100),
        "y": _stored(y1 / 100),
        "w": _stored((x2 - x1) / 100),
        "h": _stored((y2 - y1) / 100),
        "label": label,
    }


TASK_TYPE = Boxes()
