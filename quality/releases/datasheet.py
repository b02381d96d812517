"""The datasheet of a release: a Markdown document of how its data was collected.

`datasheet_write` renders datasheet.md into the build's working directory (next to data.jsonl,
which it reads back), stores the same text on `Release.datasheet`, and returns the file's
manifest entry. It is called by the builders before the manifest is written, with the manifest
minus its "files" list.

What it reads, and why a rebuild gives the same bytes:
- the manifest (counts, label distribution, agreement, consensus method, the config snapshot
  with instructions, task type and options, and the policy and split when present);
- the release's own fields (purpose, licence, intended use: the owner's free text);
- data.jsonl of the build (items without consensus, confidence quartiles);
- the release's annotations (id and item id within its cutoffs): time span, gold accuracy,
  and answers superseded by a label schema change before the release was created. Gold
  accuracy is computed here from these annotations and the gold items' answers, not read from
  WorkerScore, which changes as the project goes on;
- the project's pools, requirements and qualification test, as they are when the build runs
  (the only inputs not frozen at creation: a failed build retried after the owner changed the
  pools shows the new pools).
Nothing depends on the time of the build.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import Count, Max, Min, Q

from annotation.models import Annotation, Item
from annotation.task_types import task_type_get
from crowd.models import ProjectPool, ProjectRequirement, Qualification
from quality.models import Release

DATASHEET_FILE = "datasheet.md"
CONTENT_TYPE = "text/markdown; charset=utf-8"
# Thresholds of the computed caveats.
FEW_WORKERS = 3
LOW_AGREEMENT = 0.4
RARE_LABEL_ITEMS = 10


def datasheet_write(*, release: Release, manifest: Mapping[str, Any], workdir: Path) -> dict:
    """Write workdir/datasheet.md, store it on the release, and return its manifest entry."""
    text = datasheet_render(release=release, manifest=manifest, workdir=workdir)
    body = text.encode("utf-8")
    (workdir / DATASHEET_FILE).write_bytes(body)
    Release.objects.filter(pk=release.pk).update(datasheet=text)
    release.datasheet = text
    return {
        "format": "datasheet",
        "path": DATASHEET_FILE,
        "content_type": CONTENT_TYPE,
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }


def datasheet_render(*, release: Release, manifest: Mapping[str, Any], workdir: Path) -> str:
    """The datasheet's Markdown text (see the module docstring for what it reads)."""
    config = manifest.get("config") or {}
    facts = _Facts.collect(release=release, manifest=manifest, workdir=workdir)
    sections = [
        _title(release, manifest),
        _motivation(release),
        _instructions(config),
        _task(config),
        _collection(config, manifest, facts),
        _agreement(manifest),
        _gold(facts),
        _consensus(manifest, facts),
        _labels(config, manifest),
        _caveats(config, manifest, facts),
    ]
    return "\n\n".join(section.strip("\n") for section in sections if section) + "\n"


class _Facts:
    """What the datasheet derives from the release's inputs besides the manifest."""

    def __init__(self) -> None:
        self.first_answer: datetime | None = None
        self.last_answer: datetime | None = None
        self.pools: list[tuple[str, str, str]] = []  # (name, kind, rule)
        self.requirements: list[str] = []
        self.qualification: str = ""
        self.gold_accuracy: list[float] = []  # one per worker with gold answers
        self.gold_answers = 0
        self.no_consensus = 0
        self.confidences: list[float] = []
        self.superseded: dict[int, int] = {}  # schema version -> answers superseded

    @classmethod
    def collect(cls, *, release: Release, manifest: Mapping[str, Any], workdir: Path) -> _Facts:
        facts = cls()
        answers = Annotation.objects.filter(
            project_id=release.project_id,
            id__lte=release.annotation_cutoff_id,
            item_id__lte=release.item_cutoff_id,
        )
        span = answers.aggregate(first=Min("created_at"), last=Max("created_at"))
        facts.first_answer, facts.last_answer = span["first"], span["last"]
        superseded = (
            answers.filter(superseded_at__isnull=False, superseded_at__lte=release.created_at)
            .values("schema_version")
            .annotate(n=Count("id"))
            .order_by("schema_version")
        )
        facts.superseded = {row["schema_version"]: row["n"] for row in superseded}
        facts._read_crowd(release)
        facts._read_gold(release, manifest, answers)
        facts._read_rows(workdir / "data.jsonl")
        return facts

    def _read_crowd(self, release: Release) -> None:
        pools = (
            ProjectPool.objects.filter(project_id=release.project_id)
            .select_related("pool")
            .order_by("pool__name", "pool_id")
        )
        self.pools = [
            (link.pool.name, link.pool.get_kind_display(), link.get_rule_display())
            for link in pools
        ]
        requirements = ProjectRequirement.objects.filter(project_id=release.project_id)
        for requirement in requirements.select_related("pool").order_by("id"):
            self.requirements.append(_requirement_text(requirement))
        qualification = (
            Qualification.objects.filter(project_id=release.project_id, active=True)
            .annotate(n=Count("items"))
            .first()
        )
        if qualification is not None:
            self.qualification = (
                f"{qualification.n} test items, pass mark {qualification.pass_mark:.0%}, "
                f"{qualification.attempts_allowed} attempts allowed"
            )

    def _read_gold(self, release: Release, manifest: Mapping[str, Any], answers: Any) -> None:
        config = manifest.get("config") or {}
        task_type = task_type_get(config.get("task_type") or "single_label")
        key = task_type.category_key
        gold = dict(
            Item.objects.filter(
                project_id=release.project_id,
                id__lte=release.item_cutoff_id,
                is_gold=True,
                gold__isnull=False,
            ).values_list("id", "gold")
        )
        if not gold:
            return
        live = answers.filter(
            Q(superseded_at__isnull=True) | Q(superseded_at__gt=release.created_at),
            item_id__in=list(gold),
        )
        seen: Counter[int] = Counter()
        right: Counter[int] = Counter()
        for item_id, author_id, value in live.order_by("id").values_list(
            "item_id", "author_id", "value"
        ):
            expected = gold[item_id]
            if key:
                correct = _category(value, key) == _category(expected, key)
            else:
                correct = _canonical(value) == _canonical(expected)
            seen[author_id] += 1
            right[author_id] += int(correct)
        self.gold_answers = sum(seen.values())
        self.gold_accuracy = sorted(right[worker] / seen[worker] for worker in seen)

    def _read_rows(self, source: Path) -> None:
        if not source.exists():
            return
        with source.open("rb") as lines:
            for line in lines:
                record = json.loads(line)
                if record.get("is_gold"):
                    continue
                # structured types: no value; categorical: no label
                empty = record["value"] is None if "value" in record else not record.get("label")
                if empty:
                    self.no_consensus += 1
                else:
                    self.confidences.append(float(record.get("confidence") or 0.0))


def _category(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    return value  # a plain gold label ("positive")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _requirement_text(requirement: ProjectRequirement) -> str:
    kind = requirement.kind
    if kind == ProjectRequirement.Kind.SKILL:
        return f"skill {requirement.skill_name!r} at least {requirement.min_score:g}"
    if kind == ProjectRequirement.Kind.APPROVED:
        return f"at least {requirement.min_count} approved annotations"
    if kind == ProjectRequirement.Kind.POOL and requirement.pool is not None:
        return f"member of pool {requirement.pool.name!r}"
    return "passed the project's qualification test"


# --- sections -------------------------------------------------------------------------------


def _title(release: Release, manifest: Mapping[str, Any]) -> str:
    config = manifest.get("config") or {}
    name = f" · {manifest['name']}" if manifest.get("name") else ""
    created = _date(manifest.get("created_at"))
    project = _inline(config.get("name") or "project")
    return (
        f"# Datasheet: {project} {manifest.get('tag', '')}{name}\n\n"
        f"Release {manifest.get('tag', '')} of project {manifest.get('project_id')}, "
        f"created {created}. Items up to #{manifest.get('cutoffs', {}).get('item_id')}, "
        f"annotations up to #{manifest.get('cutoffs', {}).get('annotation_id')}."
    )


def _motivation(release: Release) -> str:
    rows = [
        ("Purpose", release.purpose),
        ("Licence", release.licence),
        ("Intended use", release.intended_use),
    ]
    parts = ["## Motivation and use"]
    for title, text in rows:
        parts.append(f"**{title}:** {text.strip() if text.strip() else '_not stated_'}")
    if release.notes.strip():
        parts.append(f"**Notes:** {release.notes.strip()}")
    return "\n\n".join(parts)


def _instructions(config: Mapping[str, Any]) -> str:
    text = (config.get("instructions") or "").strip()
    body = _quote(text) if text else "_No instructions were given._"
    return f"## Instructions given to annotators\n\n{body}"


def _task(config: Mapping[str, Any]) -> str:
    key = config.get("task_type") or "single_label"
    try:
        name = task_type_get(key).name
    except Exception:  # noqa: BLE001 - a type removed since the release: show its key
        name = key
    lines = ["## Task configuration", "", f"- Task type: {name} (`{key}`)"]
    labels = [label.get("value", "") for label in config.get("labels") or []]
    if labels:
        lines.append("- Labels: " + ", ".join(f"`{_inline(label)}`" for label in labels))
    options = config.get("task_options") or {}
    for option in sorted(options):
        lines.append(f"- Option `{option}`: `{json.dumps(options[option], sort_keys=True)}`")
    if config.get("schema_version") is not None:
        lines.append(f"- Label schema version: {config['schema_version']}")
    return "\n".join(lines)


def _collection(config: Mapping[str, Any], manifest: Mapping[str, Any], facts: _Facts) -> str:
    counts = manifest.get("counts") or {}
    items, answers = counts.get("items", 0), counts.get("annotations", 0)
    lines = ["## Collection", ""]
    lines.append(f"- Items: {items} ({counts.get('gold_items', 0)} gold)")
    lines.append(f"- Annotations: {answers}")
    lines.append(f"- Workers: {counts.get('workers', 0)}")
    if config.get("overlap") is not None:
        lines.append(f"- Overlap (answers wanted per item): {config['overlap']}")
    if items:
        lines.append(f"- Answers per item (mean): {answers / items:.2f}")
    if config.get("gold_ratio") is not None:
        lines.append(f"- Gold ratio: {float(config['gold_ratio']):.0%}")
    if facts.first_answer and facts.last_answer:
        lines.append(
            f"- Time span: {_date(facts.first_answer)} to {_date(facts.last_answer)} "
            "(first and last answer in the release)"
        )
    if facts.pools:
        lines.append("- Pools: " + "; ".join(f"{n} ({k}, {r})" for n, k, r in facts.pools))
    else:
        lines.append("- Pools: none (the project's own members)")
    if facts.requirements:
        lines.append("- Requirements: " + "; ".join(facts.requirements))
    lines.append(f"- Qualification test: {facts.qualification or 'none'}")
    return "\n".join(lines)


def _agreement(manifest: Mapping[str, Any]) -> str:
    figures = manifest.get("agreement") or {}
    lines = ["## Agreement", ""]
    names = {
        "fleiss_kappa": "Fleiss' kappa",
        "krippendorff_alpha": "Krippendorff's alpha",
        "items_measured": "Items measured",
    }
    for key in sorted(figures):
        value = figures[key]
        if isinstance(value, Mapping):
            inner = ", ".join(f"{label}: {_number(v)}" for label, v in sorted(value.items()))
            lines.append(f"- {names.get(key, key)}: {inner or '—'}")
        else:
            lines.append(f"- {names.get(key, key)}: {_number(value)}")
    if len(lines) == 2:
        lines.append("No agreement figures (no item has two or more answers).")
    lines.append("")
    lines.append("Measured on regular items (gold items excluded).")
    return "\n".join(lines)


def _gold(facts: _Facts) -> str:
    lines = ["## Gold accuracy", ""]
    if not facts.gold_accuracy:
        lines.append("No answers on gold items in this release.")
        return "\n".join(lines)
    q = np.quantile(np.array(facts.gold_accuracy), [0.0, 0.25, 0.5, 0.75, 1.0])
    lines.append(
        f"Per-worker accuracy on gold items ({len(facts.gold_accuracy)} workers, "
        f"{facts.gold_answers} gold answers), computed from the release's own answers:"
    )
    lines.append("")
    lines.append("| Min | Q1 | Median | Q3 | Max |")
    lines.append("|---:|---:|---:|---:|---:|")
    lines.append("| " + " | ".join(f"{v:.0%}" for v in q) + " |")
    return "\n".join(lines)


def _consensus(manifest: Mapping[str, Any], facts: _Facts) -> str:
    lines = ["## Consensus and selection", ""]
    lines.append(f"- Consensus method: {manifest.get('consensus_method', '—')}")
    lines.append(f"- Expert-reviewed items: {manifest.get('expert_reviewed', 0)}")
    if facts.confidences:
        q = np.quantile(np.array(facts.confidences), [0.25, 0.5, 0.75])
        lines.append(
            "- Consensus confidence (regular items): "
            f"Q1 {q[0]:.2f}, median {q[1]:.2f}, Q3 {q[2]:.2f}"
        )
    policy = manifest.get("policy")
    lines.append(f"- Selection policy: {_policy_text(policy)}")
    split = manifest.get("split")
    if split:
        lines.append(f"- Split: {_split_text(split)}")
    return "\n".join(lines)


def _policy_text(policy: Any) -> str:
    if not isinstance(policy, Mapping) or not policy:
        return "every item with at least one answer (consensus, or majority vote)"
    mode = policy.get("mode") or "consensus"
    text = policy.get("description") or {
        "consensus": "every item with a consensus",
        "confidence": f"items with consensus confidence ≥ {policy.get('min_confidence') or 0:g}",
        "expert": "expert-reviewed items only",
    }.get(mode, str(mode))
    if policy.get("exclude_flagged") and "description" not in policy:
        text += "; labels of flagged or excluded workers left out"
    left_out = [
        f"{policy[key]} {noun}"
        for key, noun in (
            ("items_left_out", "items"),
            ("annotations_left_out", "annotations"),
            ("workers_left_out", "workers"),
        )
        if policy.get(key)
    ]
    if left_out:
        text += " (left out: " + ", ".join(left_out) + ")"
    return text


def _split_text(split: Mapping[str, Any]) -> str:
    config = split.get("config", split)
    ratios = config.get("ratios") or {}
    parts = [f"{name} {float(share):.0%}" for name, share in ratios.items()]
    text = ", ".join(parts) or "configured"
    if config.get("seed") is not None:
        text += f"; seed {config['seed']}"
    if config.get("group_key"):
        text += f"; grouped by `{config['group_key']}`"
    if split.get("based_on"):
        text += f"; items of {split['based_on']} keep their split"
    counts = split.get("counts")
    if isinstance(counts, Mapping) and counts:
        items = ", ".join(
            f"{name}: {n}" for name, n in counts.items() if isinstance(n, int | float)
        )
        if items:
            text += f" ({items} items)"
    return text


def _labels(config: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    distribution = manifest.get("label_distribution") or {}
    consensus = distribution.get("consensus") or {}
    answers = distribution.get("annotations") or {}
    labels = [label.get("value", "") for label in config.get("labels") or []]
    labels += [label for label in consensus if label not in labels]
    lines = ["## Label distribution", ""]
    if not labels:
        lines.append("The task type has no label set.")
        return "\n".join(lines)
    total = sum(consensus.get(label, 0) for label in labels)
    lines.append("| Label | Items (consensus) | Share | Answers |")
    lines.append("|---|---:|---:|---:|")
    for label in labels:
        n = consensus.get(label, 0)
        share = f"{n / total:.1%}" if total else "—"
        lines.append(f"| {_cell(label)} | {n} | {share} | {answers.get(label, 0)} |")
    used = [consensus.get(label, 0) for label in labels]
    if total and min(used) > 0:
        lines.append("")
        lines.append(f"Class balance (smallest / largest label): {min(used) / max(used):.2f}.")
    elif total:
        lines.append("")
        lines.append("Class balance: at least one label has no items.")
    return "\n".join(lines)


def _caveats(config: Mapping[str, Any], manifest: Mapping[str, Any], facts: _Facts) -> str:
    found: list[str] = []
    counts = manifest.get("counts") or {}
    workers = counts.get("workers", 0)
    if workers < FEW_WORKERS:
        found.append(f"Few workers: {workers} (labels may reflect individual judgement).")
    agreement = manifest.get("agreement") or {}
    low = [
        (key, value)
        for key, value in sorted(agreement.items())
        if key != "items_measured" and isinstance(value, int | float) and value < LOW_AGREEMENT
    ]
    for key, value in low:
        found.append(f"Low agreement: {key} = {value:.3f} (below {LOW_AGREEMENT}).")
    consensus = (manifest.get("label_distribution") or {}).get("consensus") or {}
    rare = [label for label, n in consensus.items() if n < RARE_LABEL_ITEMS]
    if rare and counts.get("items", 0):
        found.append(
            f"Labels with fewer than {RARE_LABEL_ITEMS} items: "
            + ", ".join(f"`{_inline(label)}` ({consensus[label]})" for label in rare)
            + "."
        )
    if facts.no_consensus:
        found.append(f"Items without consensus: {facts.no_consensus}.")
    for version, n in facts.superseded.items():
        found.append(
            f"Schema version {version}: {n} answers superseded by a label schema change "
            "before the release."
        )
    if not facts.gold_accuracy and counts.get("items", 0):
        found.append("No gold answers: worker accuracy was not measured.")
    lines = ["## Known caveats", ""]
    lines += [f"- {text}" for text in found] if found else ["None found by the automatic checks."]
    return "\n".join(lines)


# --- formatting -----------------------------------------------------------------------------


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _date(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "—"


def _inline(text: str) -> str:
    return " ".join(str(text).split()).replace("`", "'")


def _cell(text: str) -> str:
    return _inline(text).replace("|", "\\|")


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


__all__ = ["CONTENT_TYPE", "DATASHEET_FILE", "datasheet_render", "datasheet_write"]
