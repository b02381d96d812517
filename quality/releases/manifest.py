"""A release's manifest.json: what the release is, its counts, label distribution, agreement,
consensus method and policy, and its files' sha256 and size; `manifest_publish` writes it with
the datasheet and publishes the release. Only values fixed when the release was created go in,
so a rebuild gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal
from quality.models import Release
from quality.releases.policy import policy_describe
from quality.releases.storage_publish import release_publish

CONSENSUS_METHOD = "majority vote, ties by label order"
MANIFEST_FILE = "manifest.json"


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
