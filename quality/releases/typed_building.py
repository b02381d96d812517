"""Building a release of a task type whose answers are structured (spans, boxes, free text,
multi-label): the same files, manifest and publication as `building`, with the answer as a
JSON `value` in the type's stored form.

Each released item's value is the latest expert decision made before the release was created,
else the type's consensus rule over the release's answers (computed here, from the release's
own inputs, so a rebuild gives the same bytes). `label` holds the value's short summary and
`confidence` the rule's support. Answers superseded by a label schema change before the release
was created are left out. Agreement is the type's own measures over the first
AGREEMENT_ITEMS regular items with two or more answers (the manifest says how many were used).

The selection policy (`policy`) applies as in `building`: excluded workers' answers are left
out before the consensus rule runs, and "confidence" compares the rule's support. With a split,
an item's stratum is the first label its value uses (its first span or box label, its first
label for multi-label), "" for values without labels (free text, rating, no consensus).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from django.db.models import Exists, OuterRef, Q, Subquery

from annotation.models import Annotation
from annotation.task_types import TaskConfig, TaskType, Vote
from quality.models import Release, ReviewDecision
from quality.releases.building import (
    CHUNK_SIZE,
    _identities,
    _released_items,
    annotator_pseudonym,
)
from quality.releases.manifest import manifest_head, manifest_publish, policy_manifest
from quality.releases.policy import excluded_workers, policy_admits, policy_of
from quality.releases.writing import RowSink, _dumps, _flag, _text, extra_files_write

AGREEMENT_ITEMS = 20_000
HEADER = [
    "item_id",
    "text",
    "label",
    "value",
    "confidence",
    "expert_reviewed",
    "num_annotations",
    "is_gold",
    "data",
]


def _live(release: Release) -> Q:
    """Answers that count in the release: not superseded when the release was created."""
    return Q(superseded_at__isnull=True) | Q(superseded_at__gt=release.created_at)


def _stream(
    release: Release,
) -> Iterator[tuple[int, Any, bool, list[tuple[int, Any]], Any]]:
    """(item id, data, is_gold, [(author, value)], expert decision or None), in id order."""
    decided = (
        ReviewDecision.objects.filter(item_id=OuterRef("pk"), created_at__lte=release.created_at)
        .order_by("-id")
        .values("value")[:1]
    )
    live = Annotation.objects.filter(
        _live(release), item_id=OuterRef("pk"), id__lte=release.annotation_cutoff_id
    )
    items = (
        _released_items(release)
        .filter(Exists(live))
        .order_by("id")
        .annotate(decision=Subquery(decided))
        .values_list("id", "data", "is_gold", "decision")
        .iterator(chunk_size=CHUNK_SIZE)
    )
    answers = (
        Annotation.objects.filter(
            _live(release),
            project_id=release.project_id,
            id__lte=release.annotation_cutoff_id,
            item_id__lte=release.item_cutoff_id,
        )
        .order_by("item_id", "id")
        .values_list("item_id", "author_id", "value")
        .iterator(chunk_size=CHUNK_SIZE)
    )
    pending = next(answers, None)
    for item_id, data, is_gold, decision in items:
        latest: dict[int, Any] = {}
        while pending is not None and pending[0] <= item_id:
            if pending[0] == item_id:
                latest[pending[1]] = pending[2]  # id order: a worker's latest answer wins
            pending = next(answers, None)
        if isinstance(decision, str):  # some backends hand the JSON back as text
            decision = json.loads(decision)
        yield item_id, data, is_gold, list(latest.items()), decision


def _value_labels(value: Mapping[str, Any] | None) -> list[str]:
    """The labels an answer uses (for the label distribution), whatever its stored form."""
    if not value:
        return []
    found = [value["label"]] if isinstance(value.get("label"), str) else []
    found += [label for label in value.get("labels", []) if isinstance(label, str)]
    for key in ("spans", "boxes"):
        found += [part["label"] for part in value.get(key, []) if isinstance(part, dict)]
    return found


def build_typed_into(
    *, release: Release, workdir: Path, task_type: TaskType, config: TaskConfig
) -> None:
    """Write data.jsonl, data.csv, the type's export forms and the manifest; publish them."""
    header = [*HEADER, "annotations"] if release.include_raw else HEADER
    label_values = [label["value"] for label in config.labels]
    sink = RowSink(release=release, workdir=workdir, header=header, labels=["", *label_values])
    policy = policy_of(release)
    excluded = excluded_workers(release, policy)
    identities = _identities(release) if release.include_raw and release.include_identities else {}
    pseudonyms: dict[int, str] = {}
    sample: dict[int, list[Vote]] = {}
    workers: set[int] = set()
    left_out: set[int] = set()
    counts = Counter[str]()
    consensus_labels, answer_labels = Counter[str](), Counter[str]()
    total = _released_items(release).count()
    for item_id, data, is_gold, all_answers, decision in _stream(release):
        counts["seen"] += 1
        if counts["seen"] % CHUNK_SIZE == 0:
            progress = 0.9 * counts["seen"] / total if total else 0.0
            Release.objects.filter(pk=release.pk).update(progress=round(progress, 4))
        answers = [(a, v) for a, v in all_answers if a not in excluded]
        counts["answers_left_out"] += len(all_answers) - len(answers)
        left_out.update(a for a, _v in all_answers if a in excluded)
        if not answers and decision is None:
            counts["items_left_out"] += 1
            continue
        votes = [Vote(worker_id=author, value=value) for author, value in answers]
        if decision is not None:
            value, confidence, reviewed = decision, 1.0, True
        else:
            consensus = task_type.consensus(votes, config=config) if votes else None
            value = None if consensus is None else dict(consensus.value)
            confidence = 0.0 if consensus is None else round(float(consensus.support), 4)
            reviewed = False
        if not policy_admits(
            policy, confidence=confidence, reviewed=reviewed, has_value=value is not None
        ):
            counts["items_left_out"] += 1
            continue
        summary = task_type.summary(value)
        record: dict[str, Any] = {
            "item_id": item_id,
            "data": data,
            "label": summary,
            "value": value,
            "confidence": confidence,
            "expert_reviewed": reviewed,
            "num_annotations": len(votes),
            "is_gold": is_gold,
        }
        csv_row = [
            item_id,
            _text(data),
            summary,
            "" if value is None else _dumps(value),
            confidence,
            _flag(reviewed),
            len(votes),
            _flag(is_gold),
            _dumps(data),
        ]
        if release.include_raw:
            for author, _value in answers:
                if author not in pseudonyms:
                    pseudonyms[author] = annotator_pseudonym(
                        project_id=release.project_id, user_id=author
                    )
            record["annotations"] = [
                {"annotator": pseudonyms[author], "value": answer, **identities.get(author, {})}
                for author, answer in answers
            ]
            csv_row.append(_dumps(record["annotations"]))
        used = _value_labels(value)
        sink.add(record, csv_row, stratum=used[0] if used else "")
        counts["items"] += 1
        counts["gold_items"] += int(is_gold)
        counts["annotations"] += len(votes)
        counts["expert_reviewed"] += int(reviewed)
        workers.update(author for author, _value in answers)
        consensus_labels.update(used)
        answer_labels.update(label for _a, answer in answers for label in _value_labels(answer))
        if not is_gold and len(votes) >= 2 and len(sample) < AGREEMENT_ITEMS:
            sample[item_id] = votes

    data_files, split = sink.close()
    files = [
        *data_files,
        *extra_files_write(release=release, config=config, task_type=task_type, workdir=workdir),
    ]
    agreement = task_type.agreement(sample, config=config) if sample else {}
    manifest = {
        **manifest_head(release),
        "counts": {
            "items": counts["items"],
            "gold_items": counts["gold_items"],
            "annotations": counts["annotations"],
            "workers": len(workers),
        },
        "label_distribution": {
            "consensus": {label: consensus_labels[label] for label in label_values},
            "annotations": {label: answer_labels[label] for label in label_values},
        },
        "agreement": {**_rounded(agreement), "items_measured": len(sample)},
        "consensus_method": f"{task_type.name}: the type's consensus rule over every counted "
        "answer; expert review decisions are final",
        "expert_reviewed": counts["expert_reviewed"],
        "files": files,
        "policy": policy_manifest(
            policy,
            items_left_out=counts["items_left_out"],
            answers_left_out=counts["answers_left_out"],
            workers_left_out=len(left_out),
        ),
        "split": split,
    }
    manifest_publish(release=release, workdir=workdir, manifest=manifest, files=files)


def _rounded(figures: Mapping[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(key): one(inner) for key, inner in value.items()}
        return None if value is None else round(float(value), 6)

    return {str(key): one(value) for key, value in figures.items()}
