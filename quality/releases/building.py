"""Building a dataset release: stream its items, write the data files, hash them, and publish.

The build runs in a task, in autocommit, reading items and annotations through two
server-side cursors and writing data.jsonl and data.csv to a temporary directory while
hashing them; manifest.json describes the result. Files are staged in storage outside any
lock, then moved into place and the release marked ready in one short final transaction under
the release's row lock (`storage_publish`).

Both builders (this one for categorical types, `typed_building` for structured ones) apply
the release's selection policy (`policy`) per item and hand their rows to a `RowSink`
(`writing`), which adds the `split` column when the release has a split (`splits`). Every file
beyond data.jsonl and data.csv is written in `writing.extra_files_write`;
`manifest.manifest_publish` writes manifest.json and publishes: the two places to extend.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT

from annotation.models import Annotation, Item
from annotation.task_types import TaskConfig, task_type_get
from core.exceptions import ApplicationError
from crowd.models import ExternalIdentity
from quality.metrics import vote_shares
from quality.models import ItemScore, Release, ReviewDecision
from quality.releases.manifest import _manifest, _Totals, manifest_publish, policy_manifest
from quality.releases.policy import excluded_workers, policy_admits, policy_of
from quality.releases.storage_publish import staging_sweep
from quality.releases.writing import RowSink, _dumps, _flag, _text, extra_files_write

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000  # rows fetched per round trip, and items between progress updates


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
