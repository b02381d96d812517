"""Building a dataset release: stream its items, write the data files, hash them, and publish.

The build runs in a task, in autocommit, reading items and annotations through two
server-side cursors and writing data.jsonl and data.csv to a temporary directory while
hashing them; manifest.json describes the result. Files are staged in storage outside any
lock, then moved into place and the release marked ready in one short final transaction under
the release's row lock (`storage_publish`).

Both builders (this one for categorical types, `typed_building` for structured ones) apply
the release's selection policy (`policy`) per item and hand their rows to a `RowSink`, which
adds the `split` column when the release has a split (`splits`). Every file beyond data.jsonl
and data.csv is written in `extra_files_write`; `manifest_publish` writes manifest.json and
publishes: the two places to extend.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT

from annotation.models import Annotation, Item
from annotation.task_types import ExportForm, ExportRow, TaskConfig, task_type_get
from core.exceptions import ApplicationError
from crowd.models import ExternalIdentity
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal, vote_shares
from quality.models import ItemScore, Release, ReviewDecision
from quality.releases.policy import excluded_workers, policy_admits, policy_describe, policy_of
from quality.releases.splits import (
    SPLITS,
    SplitCollector,
    previous_release,
    previous_splits,
    split_of,
)
from quality.releases.storage_publish import release_publish, staging_sweep
from quality.releases.storage_publish import release_storage_dir as release_storage_dir

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000  # rows fetched per round trip, and items between progress updates
CONSENSUS_METHOD = "majority vote, ties by label order"
DATA_FILES = {"jsonl": "data.jsonl", "csv": "data.csv"}
MANIFEST_FILE = "manifest.json"
# A CSV cell starting with one of these is read as a formula by spreadsheet programs.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def release_build(*, release: Release) -> Release:
    """Build a release's files and manifest; a no-op when it is ready already.

    Runs in autocommit so progress updates are visible while it streams; the files only
    become visible (ReleaseFile rows, status ready) in one final transaction. Any failure
    marks the release failed with the error and exposes no files.
    """
    started = (
        Release.objects.filter(pk=release.pk)
        .exclude(status=Release.Status.READY)
        .update(status=Release.Status.BUILDING, progress=0.0, error="")
    )
    if started:
        try:
            with tempfile.TemporaryDirectory(prefix="release-") as tmp:
                _build_into(release=release, workdir=Path(tmp))
        except Exception as exc:
            logger.exception("Release %s failed to build", release.pk)
            Release.objects.filter(pk=release.pk).exclude(status=Release.Status.READY).update(
                status=Release.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
    else:  # ready already: only staging left by a build killed after another one finished
        staging_sweep(release=release)
    release.refresh_from_db()
    return release


def annotator_pseudonym(*, project_id: int, user_id: int) -> str:
    """A stable per-project pseudonym for an annotator: 'w' + 10 hex digits of an HMAC."""
    message = f"release-annotator:{project_id}:{user_id}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    return "w" + digest[:10]


def csv_safe(value: Any) -> Any:
    """A CSV cell that spreadsheets will not run: text that could start a formula gets a '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _identities(release: Release) -> dict[int, dict[str, Any]]:
    """Username, email and external platform ids of everyone who annotated the release.

    Only for releases whose owner asked for identities. External ids are those of the
    project's own studies, sorted, so the files stay the same for the same data.
    """
    voted = Annotation.objects.filter(
        author_id=OuterRef("pk"),
        project_id=release.project_id,
        id__lte=release.annotation_cutoff_id,
        item_id__lte=release.item_cutoff_id,
    )
    users = get_user_model().objects.filter(Exists(voted)).values_list("id", "username", "email")
    identities: dict[int, dict[str, Any]] = {
        user_id: {
            "annotator_username": username,
            "annotator_email": email or "",
            "annotator_external_ids": [],
        }
        for user_id, username, email in users
    }
    external = (
        ExternalIdentity.objects.filter(
            study__project_id=release.project_id, user_id__in=list(identities)
        )
        .order_by("user_id", "external_id")
        .values_list("user_id", "external_id")
        .distinct()
    )
    for user_id, external_id in external:
        identities[user_id]["annotator_external_ids"].append(external_id)
    return identities


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _HashingWriter:
    """A text sink that writes UTF-8 to a file and hashes what it writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(text)

    def close(self) -> dict[str, Any]:
        self._file.close()
        return {"sha256": self._hash.hexdigest(), "size": self.size}


class RowSink:
    """Where a builder's rows go: straight into data.jsonl and data.csv, or, when the release
    has a split, first into a staging file while the split's inputs are collected; `close`
    then assigns the splits and writes both files with a `split` column (the last CSV column).
    """

    STAGING = "rows.staging.jsonl"

    def __init__(
        self, *, release: Release, workdir: Path, header: list[str], labels: list[str]
    ) -> None:
        self.release = release
        self.workdir = workdir
        self.split = split_of(release)
        self.collector = SplitCollector(config=self.split, labels=labels) if self.split else None
        self.header = [*header, "split"] if self.split else list(header)
        if self.collector is not None:
            self._staging = (workdir / self.STAGING).open("w", encoding="utf-8")
        else:
            self._open_outputs()

    def _open_outputs(self) -> None:
        self._jsonl = _HashingWriter(self.workdir / DATA_FILES["jsonl"])
        self._csv = _HashingWriter(self.workdir / DATA_FILES["csv"])
        self._rows = csv.writer(self._csv, lineterminator="\n")
        self._rows.writerow(self.header)

    def _write(self, record: dict[str, Any], csv_row: list[Any]) -> None:
        self._jsonl.write(_dumps(record) + "\n")
        self._rows.writerow([csv_safe(cell) for cell in csv_row])

    def add(self, record: dict[str, Any], csv_row: list[Any], *, stratum: str) -> None:
        """One released item: its JSONL record, its CSV cells, and its split stratum label."""
        if self.collector is None:
            self._write(record, csv_row)
            return
        self.collector.add(item_id=record["item_id"], data=record["data"], stratum=stratum)
        self._staging.write(_dumps([record, csv_row]) + "\n")

    def close(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The manifest entries of data.csv and data.jsonl, and the manifest's split section
        (None without a split)."""
        summary = None
        if self.collector is not None:
            self._staging.close()
            based_on = previous_release(self.release, self.split)
            assigned = self.collector.assign(previous_splits(based_on) if based_on else None)
            self._open_outputs()
            staging = self.workdir / self.STAGING
            with staging.open("r", encoding="utf-8") as lines:
                for line, k in zip(lines, assigned.tolist(), strict=True):
                    record, csv_row = json.loads(line)
                    record["split"] = SPLITS[k]
                    self._write(record, [*csv_row, SPLITS[k]])
            staging.unlink()
            summary = self.collector.summary(assigned, based_on)
        files = [
            {"format": "csv", "path": DATA_FILES["csv"], **self._csv.close()},
            {"format": "jsonl", "path": DATA_FILES["jsonl"], **self._jsonl.close()},
        ]
        return files, summary


def extra_files_write(
    *, release: Release, config: TaskConfig, task_type: Any, workdir: Path
) -> list[dict[str, Any]]:
    """Write every file beyond data.jsonl and data.csv from the finished data.jsonl: the task
    type's export forms, then Parquet, the Hugging Face directory and Label Studio JSON
    (quality.releases.formats); their manifest entries."""
    from quality.releases.formats import formats_write  # it reads this module's constants

    source = workdir / DATA_FILES["jsonl"]
    entries = [
        export_form_write(form=form, config=config, source=source, workdir=workdir)
        for form in task_type.export_forms_for(config)
    ]
    entries += formats_write(
        release=release, config=config, task_type=task_type, source=source, workdir=workdir
    )
    return entries


def manifest_publish(
    *, release: Release, workdir: Path, manifest: dict[str, Any], files: list[dict[str, Any]]
) -> None:
    """Write the datasheet and manifest.json (sorted keys, so a rebuild gives the same bytes)
    and publish the release with them; `files` are the entries the manifest lists."""
    from quality.releases.datasheet import datasheet_write  # it reads this module's constants

    described = {key: value for key, value in manifest.items() if key != "files"}
    sheet = datasheet_write(release=release, manifest=described, workdir=workdir)
    files = [*files, sheet]
    manifest = {**manifest, "files": files}
    body = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    (workdir / MANIFEST_FILE).write_bytes(body)
    entry = {
        "format": "manifest",
        "path": MANIFEST_FILE,
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    release_publish(release=release, workdir=workdir, manifest=manifest, files=[*files, entry])


def policy_manifest(
    policy: dict[str, Any], *, items_left_out: int, answers_left_out: int, workers_left_out: int
) -> dict[str, Any]:
    """The manifest's policy section: the stored policy, what it means, and what it left out."""
    return {
        **policy,
        "description": policy_describe(policy),
        "items_left_out": items_left_out,
        "annotations_left_out": answers_left_out,
        "workers_left_out": workers_left_out,
    }


ENGINE_METHOD = (
    "quality engine ({methods}); expert review decisions are final; "
    "majority vote, ties by label order, where the engine has no label"
)


@dataclass(frozen=True)
class _Consensus:
    """What the quality engine and expert review say about an item at build time."""

    engine_label: str  # ItemScore.label, "" when the engine has not labeled the item
    engine_confidence: float
    engine_method: str
    state: str
    reviewed_label: str | None  # the latest expert decision made before the release


# (item id, item data, is_gold, [(author id, label), ...], consensus) for one released item
_Entry = tuple[int, Any, bool, list[tuple[int, str | None]], _Consensus]


@dataclass
class _Totals:
    items: int = 0
    gold_items: int = 0
    annotations: int = 0
    workers: set[int] = field(default_factory=set)
    consensus: Counter[str] = field(default_factory=Counter)
    votes: Counter[str] = field(default_factory=Counter)
    patterns: Counter[tuple[int, ...]] = field(default_factory=Counter)
    pseudonyms: dict[int, str] = field(default_factory=dict)  # one HMAC per annotator
    identities: dict[int, dict[str, Any]] = field(default_factory=dict)  # only when asked for
    expert_reviewed: int = 0
    methods: set[str] = field(default_factory=set)  # engine methods whose labels were used
    items_left_out: int = 0  # items the policy did not take
    answers_left_out: int = 0  # answers of excluded workers
    workers_left_out: set[int] = field(default_factory=set)


def _released_items(release: Release) -> QuerySet[Item]:
    voted = Annotation.objects.filter(item_id=OuterRef("pk"), id__lte=release.annotation_cutoff_id)
    return Item.objects.filter(
        project_id=release.project_id, id__lte=release.item_cutoff_id
    ).filter(Exists(voted))


def _stream(release: Release, *, key: str = "label") -> Iterator[_Entry]:
    """Items in id order with their annotations, merged from two server-side cursors."""
    # Expert decisions count when made before the release was created: a later decision
    # never changes what a release says.
    decided = (
        ReviewDecision.objects.filter(item_id=OuterRef("pk"), created_at__lte=release.created_at)
        .order_by("-id")
        .annotate(decided=KT(f"value__{key}"))
        .values("decided")[:1]
    )
    items = (
        _released_items(release)
        .order_by("id")
        .annotate(reviewed_label=Subquery(decided))
        .values_list(
            "id",
            "data",
            "is_gold",
            "score__label",
            "score__confidence",
            "score__method",
            "score__state",
            "reviewed_label",
        )
        .iterator(chunk_size=CHUNK_SIZE)
    )
    annotations = (
        Annotation.objects.filter(
            project_id=release.project_id,
            id__lte=release.annotation_cutoff_id,
            item_id__lte=release.item_cutoff_id,
        )
        .order_by("item_id", "id")
        .annotate(label=KT(f"value__{key}"))  # only the category: no JSON decoding per row
        .values_list("item_id", "author_id", "label")
        .iterator(chunk_size=CHUNK_SIZE)
    )
    pending = next(annotations, None)
    for item_id, data, is_gold, label, confidence, method, state, reviewed in items:
        votes: list[tuple[int, str | None]] = []
        while pending is not None and pending[0] <= item_id:
            if pending[0] == item_id:
                votes.append((pending[1], pending[2]))
            pending = next(annotations, None)
        consensus = _Consensus(label or "", confidence or 0.0, method or "", state or "", reviewed)
        yield item_id, data, is_gold, votes, consensus


def _final_label(
    consensus: _Consensus, majority: str, share: float, *, engine: bool = True
) -> tuple[str, float, bool]:
    """(label, confidence, expert_reviewed): expert decision, else engine, else majority vote.

    An ItemScore already marked reviewed by a decision made after the release was created
    holds that later decision, not the engine's answer: the release uses the majority then.
    Without `engine` (the engine counted answers the release leaves out) the majority is used.
    """
    if consensus.reviewed_label:
        return consensus.reviewed_label, 1.0, True
    if engine and consensus.engine_label and consensus.state != ItemScore.State.REVIEWED:
        return consensus.engine_label, round(consensus.engine_confidence, 4), False
    return majority, share, False


def snapshot_config(release: Release) -> TaskConfig:
    """The task configuration frozen in the release (older releases have no options)."""
    snapshot = release.config_snapshot
    return TaskConfig(
        task_type=snapshot.get("task_type", "single_label"),
        labels=tuple(snapshot.get("labels") or ()),
        options=dict(snapshot.get("task_options") or {}),
    )


def _build_into(*, release: Release, workdir: Path) -> None:
    config = snapshot_config(release)
    task_type = task_type_get(config.task_type)
    if not task_type.category_key:  # structured answers: a JSON value per item
        from quality.releases.typed_building import build_typed_into  # it imports this module

        build_typed_into(release=release, workdir=workdir, task_type=task_type, config=config)
        return
    labels = task_type.category_values(config=config)
    index = {label: i for i, label in enumerate(labels)}
    total = _released_items(release).count()
    header = [
        "item_id",
        "text",
        "label",
        "confidence",
        "expert_reviewed",
        "agreement",
        "num_annotations",
        "is_gold",
        "data",
    ]
    if release.include_raw:
        header.append("annotations")
    sink = RowSink(release=release, workdir=workdir, header=header, labels=labels)
    policy = policy_of(release)
    build = _Build(release, policy, excluded_workers(release, policy), index, labels, sink)
    batch, seen = [], 0
    if release.include_raw and release.include_identities:
        build.totals.identities = _identities(release)
    for entry in _stream(release, key=task_type.category_key):
        batch.append(entry)
        if len(batch) == CHUNK_SIZE:
            build.write(batch)
            seen += len(batch)
            batch = []
            progress = 0.95 * seen / total if total else 0.0
            Release.objects.filter(pk=release.pk).update(progress=round(progress, 4))
    build.write(batch)
    totals = build.totals
    data_files, split = sink.close()
    files = [
        *data_files,
        *extra_files_write(release=release, config=config, task_type=task_type, workdir=workdir),
    ]
    manifest = _manifest(release, labels, totals, files)
    manifest["policy"] = policy_manifest(
        policy,
        items_left_out=totals.items_left_out,
        answers_left_out=totals.answers_left_out,
        workers_left_out=len(totals.workers_left_out),
    )
    manifest["split"] = split
    manifest_publish(release=release, workdir=workdir, manifest=manifest, files=files)


@dataclass
class _Build:
    """The categorical build's state: policy, excluded workers, label index, sink, totals."""

    release: Release
    policy: dict[str, Any]
    excluded: frozenset[int]
    index: dict[str, int]
    labels: list[str]
    sink: RowSink
    totals: _Totals = field(default_factory=_Totals)

    def _kept(self, batch: list[_Entry]) -> list[tuple[_Entry, bool]]:
        """The batch without excluded workers' answers; (entry, engine label still valid)."""
        if not self.excluded:
            return [(entry, True) for entry in batch]
        kept = []
        for item_id, data, is_gold, votes, consensus in batch:
            counted = [vote for vote in votes if vote[0] not in self.excluded]
            left_out = len(votes) - len(counted)
            self.totals.answers_left_out += left_out
            self.totals.workers_left_out.update(a for a, _l in votes if a in self.excluded)
            if not counted and not consensus.reviewed_label:
                self.totals.items_left_out += 1
                continue
            kept.append(((item_id, data, is_gold, counted, consensus), left_out == 0))
        return kept

    def write(self, batch: list[_Entry]) -> None:
        """Write the rows of one batch of items that the policy takes."""
        entries = self._kept(batch)
        if not entries:
            return
        release, labels, index, totals = self.release, self.labels, self.index, self.totals
        counts = np.zeros((len(entries), len(labels)), dtype=np.int64)
        for row, ((item_id, _data, _gold, votes, _consensus), _engine) in enumerate(entries):
            for _author, label in votes:
                if label not in index:
                    raise ApplicationError(
                        f"Item {item_id} has an annotation with label {label!r}, "
                        "which is not in the release's label set."
                    )
                counts[row, index[label]] += 1
        winners, shares = vote_shares(counts)
        for row, ((item_id, data, is_gold, votes, consensus), engine) in enumerate(entries):
            agreement = round(float(shares[row]), 4)
            label, confidence, reviewed = _final_label(
                consensus, labels[int(winners[row])], agreement, engine=engine
            )
            if not policy_admits(self.policy, confidence=confidence, reviewed=reviewed):
                totals.items_left_out += 1
                continue
            record: dict[str, Any] = {
                "item_id": item_id,
                "data": data,
                "label": label,
                "confidence": confidence,
                "expert_reviewed": reviewed,
                "agreement": agreement,
                "num_annotations": len(votes),
                "is_gold": is_gold,
            }
            csv_row = [
                item_id,
                _text(data),
                label,
                confidence,
                _flag(reviewed),
                agreement,
                len(votes),
                _flag(is_gold),
                _dumps(data),
            ]
            if release.include_raw:
                for author, _label in votes:
                    if author not in totals.pseudonyms:
                        totals.pseudonyms[author] = annotator_pseudonym(
                            project_id=release.project_id, user_id=author
                        )
                record["annotations"] = [
                    {
                        "annotator": totals.pseudonyms[author],
                        "label": vote,
                        **totals.identities.get(author, {}),
                    }
                    for author, vote in votes
                ]
                csv_row.append(_dumps(record["annotations"]))
            self.sink.add(record, csv_row, stratum=label)
            totals.items += 1
            totals.gold_items += int(is_gold)
            totals.annotations += len(votes)
            totals.workers.update(author for author, _label in votes)
            totals.consensus[label] += 1
            totals.expert_reviewed += int(reviewed)
            if (
                engine
                and consensus.engine_label
                and not reviewed
                and label == consensus.engine_label
            ):
                totals.methods.add(consensus.engine_method or "engine")
            totals.votes.update(vote for _author, vote in votes)
            if not is_gold:  # agreement covers regular items, as on the quality dashboard
                totals.patterns[tuple(int(n) for n in counts[row])] += 1


def _text(data: Any) -> str:
    text = data.get("text", "") if isinstance(data, dict) else ""
    return text if isinstance(text, str) else _dumps(text)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _agreement(totals: _Totals, n_labels: int) -> dict[str, float | None]:
    patterns = sorted(totals.patterns.items())  # fixed row order: identical float sums
    if patterns:
        matrix = np.repeat(
            np.array([p for p, _n in patterns], dtype=np.int64),
            [n for _p, n in patterns],
            axis=0,
        )
    else:
        matrix = np.zeros((0, n_labels), dtype=np.int64)
    kappa, alpha = fleiss_kappa(matrix), krippendorff_alpha_nominal(matrix)
    return {
        "fleiss_kappa": None if kappa is None else round(kappa, 6),
        "krippendorff_alpha": None if alpha is None else round(alpha, 6),
    }


def _consensus_method(totals: _Totals) -> str:
    if not totals.methods and not totals.expert_reviewed:
        return CONSENSUS_METHOD
    return ENGINE_METHOD.format(methods=", ".join(sorted(totals.methods)) or "none")


def manifest_head(release: Release) -> dict[str, Any]:
    """The manifest fields every release has, all fixed when it was created."""
    return {
        "format_version": 1,
        "project_id": release.project_id,
        "version": release.version,
        "tag": release.tag,
        "name": release.name,
        "notes": release.notes,
        "created_at": release.created_at.astimezone(UTC).isoformat(),
        "cutoffs": {
            "item_id": release.item_cutoff_id,
            "annotation_id": release.annotation_cutoff_id,
        },
        "include_raw": release.include_raw,
        "include_identities": release.include_raw and release.include_identities,
        "config": release.config_snapshot,
    }


def _manifest(
    release: Release, labels: list[str], totals: _Totals, files: list[dict[str, Any]]
) -> dict[str, Any]:
    """Only values fixed when the release was created, so a rebuild gives the same bytes."""
    return {
        **manifest_head(release),
        "counts": {
            "items": totals.items,
            "gold_items": totals.gold_items,
            "annotations": totals.annotations,
            "workers": len(totals.workers),
        },
        "label_distribution": {
            "consensus": {label: totals.consensus[label] for label in labels},
            "annotations": {label: totals.votes[label] for label in labels},
        },
        "agreement": _agreement(totals, len(labels)),
        "consensus_method": _consensus_method(totals),
        "expert_reviewed": totals.expert_reviewed,
        "files": files,
    }


def export_rows(source: Path, *, config: TaskConfig) -> Iterator[ExportRow]:
    """The released items as export forms read them, streamed back from data.jsonl."""
    task_type = task_type_get(config.task_type)
    with source.open("rb") as lines:
        for line in lines:
            record = json.loads(line)
            value = record.get("value")
            if value is None and record.get("label"):
                value = task_type.value_of_category(record["label"])
            yield ExportRow(
                item_id=record["item_id"],
                data=record["data"],
                value=value,
                split=record.get("split", ""),
            )


def export_form_write(
    *, form: ExportForm, config: TaskConfig, source: Path, workdir: Path
) -> dict[str, Any]:
    """Write one of the task type's export forms next to data.jsonl; its manifest entry."""
    target = workdir / form.filename
    with target.open("wb") as out:
        form.write(export_rows(source, config=config), out, config)
    digest, size = hashlib.sha256(), 0
    with target.open("rb") as written:
        for chunk in iter(lambda: written.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {
        "format": form.key,
        "path": form.filename,
        "content_type": form.content_type,
        "sha256": digest.hexdigest(),
        "size": size,
    }
