"""Deterministic, stratified, group-aware train/validation/test splits that stay stable across
a project's versions.

A split is configured on `Release.split` in the form `split_clean` returns:
`{"seed": int, "ratios": {"train": r, "validation": r, "test": r}, "group_key": str}` (ratios
sum to 1; `group_key` names an item data field, "" for none); `{}` means no split.

The assignment (`split_assign`), for the items a release takes:
- Groups: items sharing the value of `data[group_key]` form one group and always land in the
  same split. Items without that field (or with a null or empty value), and every item when
  there is no group key, are groups of their own.
- Strata: each item has a stratum label (the builder's choice: the consensus label for
  categorical types, the first label of the consensus value for structured types, "" when it
  has none); a group's stratum is its items' majority label, ties by label-set order.
- Carried over: a group with an item that was in the latest earlier ready release of the project
  with the same seed, ratios and group key keeps that item's split (the split of its lowest item
  id if its items had several). So an item keeps its split in every later version.
- New groups: within each stratum, in the order of a hash of (seed, group value), each group
  goes to the split furthest below its target share of the stratum (relative shortfall
  (target - assigned) / target, counted in items, carried-over groups included; ties go to the
  split the group's hash falls in when mapped into the ratio intervals, else the first in
  train, validation, test order). Splits with ratio 0 get nothing.

Guarantees: the same inputs (items, labels, group values, seed, ratios, previous release) give
the same split; a stratum's new groups fill every positive-ratio split that has none of its
groups before any split gets a second one (so a label with 3 items and no carried-over items
lands in 3 splits at 80/10/10); within a stratum each split's item count is within the largest
group's size of its target once the stratum has enough groups. Another seed gives another order,
hence (for more than a handful of items) another split.
"""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from collections.abc import Mapping
from typing import Any

import numpy as np
from django.core.files.storage import default_storage

from core.exceptions import ApplicationError
from quality.models import Release

SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT: dict[str, Any] = {
    "seed": 42,
    "ratios": {"train": 0.8, "validation": 0.1, "test": 0.1},
    "group_key": "",
}
MAX_SEED = 2**63 - 1


def _fail(field: str, message: str) -> ApplicationError:
    return ApplicationError(f"{field}: {message}", code="invalid_split", fields={field: [message]})


def split_clean(raw: Any) -> dict[str, Any]:
    """The normalised split config for `raw`; ApplicationError naming the field (`split.seed`,
    `split.ratios.train`, `split.group_key`, ...).

    None, False and {} mean no split ({}); True is the default split (seed 42, 80/10/10, no
    group key), whose values also fill the missing fields of a partial object. Idempotent.
    """
    if raw is None or raw is False or raw == {}:
        return {}
    if raw is True:
        return split_clean(dict(DEFAULT_SPLIT))
    if not isinstance(raw, Mapping):
        raise _fail("split", "Must be an object with seed, ratios and group_key.")
    unknown = sorted(set(raw) - set(DEFAULT_SPLIT))
    if unknown:
        raise _fail(f"split.{unknown[0]}", "Unknown field.")
    seed = raw.get("seed", DEFAULT_SPLIT["seed"])
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise _fail("split.seed", f"Must be a whole number from 0 to {MAX_SEED}.")
    ratios = raw.get("ratios", DEFAULT_SPLIT["ratios"])
    if not isinstance(ratios, Mapping):
        raise _fail("split.ratios", "Must be an object with train, validation and test.")
    unknown = sorted(set(ratios) - set(SPLITS))
    if unknown:
        raise _fail(f"split.ratios.{unknown[0]}", "Unknown split; use train, validation, test.")
    cleaned: dict[str, float] = {}
    for name in SPLITS:
        value = ratios.get(name)
        if value is None:
            raise _fail(f"split.ratios.{name}", "Required (a number from 0 to 1).")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(f"split.ratios.{name}", "Must be a number from 0 to 1.")
        if not math.isfinite(value) or not 0 <= value <= 1:
            raise _fail(f"split.ratios.{name}", "Must be between 0 and 1.")
        cleaned[name] = round(float(value), 6)
    if abs(sum(cleaned.values()) - 1) > 1e-6:
        total = sum(cleaned.values())
        raise _fail("split.ratios", f"The ratios must add up to 1 (they add up to {total:g}).")
    group_key = raw.get("group_key", "") or ""
    if not isinstance(group_key, str) or len(group_key.strip()) > 100:
        raise _fail("split.group_key", "Must be an item data field name (at most 100 characters).")
    return {"seed": seed, "ratios": cleaned, "group_key": group_key.strip()}


def split_of(release: Release) -> dict[str, Any]:
    """The release's split config in normalised form; {} when it has none."""
    return split_clean(release.split or None)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def group_value(data: Any, *, item_id: int, group_key: str) -> str:
    """The item's group as text: its data[group_key] as JSON, or its own id when it has none."""
    if group_key and isinstance(data, Mapping):
        value = data.get(group_key)
        if value is not None and value != "":
            return "g" + json.dumps(value, sort_keys=True, separators=(",", ":"))
    return f"i{item_id}"


def split_assign(
    *,
    item_ids: np.ndarray,
    strata: np.ndarray,
    groups: np.ndarray,
    order: np.ndarray,
    ratios: tuple[float, float, float],
    previous_ids: np.ndarray | None = None,
    previous_splits: np.ndarray | None = None,
) -> np.ndarray:
    """Each item's split index (0 train, 1 validation, 2 test), aligned with `item_ids`.

    `strata` are small non-negative ints (a lower one wins a group's majority tie), `groups`
    a uint64 id per item (same id, same group), `order` the uint64 seeded hash of the item's
    group. `previous_ids` (sorted) and `previous_splits` hold the earlier release's splits.
    """
    n = len(item_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    uniq, inverse = np.unique(groups, return_inverse=True)
    n_groups = len(uniq)
    sizes = np.bincount(inverse, minlength=n_groups)
    group_order = np.empty(n_groups, dtype=np.uint64)
    group_order[inverse] = order
    # A group's stratum: its most frequent label, ties to the lower stratum index.
    width = int(strata.max()) + 1
    keys, counts = np.unique(inverse.astype(np.int64) * width + strata, return_counts=True)
    key_group, key_label = keys // width, keys % width
    ranked = np.lexsort((key_label, -counts, key_group))
    first = np.ones(len(ranked), dtype=bool)
    first[1:] = key_group[ranked][1:] != key_group[ranked][:-1]
    group_stratum = np.empty(n_groups, dtype=np.int64)
    group_stratum[key_group[ranked][first]] = key_label[ranked][first]
    # Groups carried over from the previous release keep their split.
    group_split = np.full(n_groups, -1, dtype=np.int8)
    if previous_ids is not None and len(previous_ids):
        pos = np.minimum(np.searchsorted(previous_ids, item_ids), len(previous_ids) - 1)
        hit = np.nonzero(previous_ids[pos] == item_ids)[0]
        hit = hit[np.argsort(item_ids[hit], kind="stable")]
        carried, at = np.unique(inverse[hit], return_index=True)
        group_split[carried] = previous_splits[pos[hit[at]]]
    weights = np.asarray(ratios, dtype=np.float64)
    totals = np.bincount(group_stratum, weights=sizes, minlength=width)
    assigned = np.zeros((width, len(SPLITS)), dtype=np.float64)
    kept = np.nonzero(group_split >= 0)[0]
    np.add.at(assigned, (group_stratum[kept], group_split[kept]), sizes[kept])
    # A group's preferred split (for ties): its hash mapped into the ratio intervals.
    position = group_order.astype(np.float64) / 2.0**64
    bounds = np.cumsum(weights)
    preferred = np.minimum(np.searchsorted(bounds, position, side="right"), len(SPLITS) - 1)
    new = np.nonzero(group_split < 0)[0]
    new = new[np.lexsort((uniq[new], group_order[new], group_stratum[new]))]
    active = [k for k in range(len(SPLITS)) if weights[k] > 0]
    targets = (totals[:, None] * weights[None, :]).tolist()
    filled = assigned.tolist()
    stratum_of, size_of, prefer_of = group_stratum.tolist(), sizes.tolist(), preferred.tolist()
    out = group_split.tolist()
    for g in new.tolist():
        stratum = stratum_of[g]
        target, have = targets[stratum], filled[stratum]
        best, chosen = -math.inf, []
        for k in active:
            shortfall = (target[k] - have[k]) / target[k]
            if shortfall > best:
                best, chosen = shortfall, [k]
            elif shortfall == best:
                chosen.append(k)
        pick = prefer_of[g] if prefer_of[g] in chosen else chosen[0]
        have[pick] += size_of[g]
        out[g] = pick
    return np.asarray(out, dtype=np.int8)[inverse]


class SplitCollector:
    """Collects, item by item, what the split needs (flat arrays, no per-item objects)."""

    def __init__(self, *, config: Mapping[str, Any], labels: list[str]) -> None:
        self.config = config
        self.strata: dict[str, int] = {label: i for i, label in enumerate(dict.fromkeys(labels))}
        self._ids = array("q")
        self._strata = array("q")
        self._groups = array("Q")
        self._order = array("Q")
        self._seed = f"{config['seed']}:"

    def add(self, *, item_id: int, data: Any, stratum: str) -> None:
        """Record one released item (in the order the rows are written)."""
        group = group_value(data, item_id=item_id, group_key=self.config["group_key"])
        if stratum not in self.strata:
            self.strata[stratum] = len(self.strata)
        self._ids.append(item_id)
        self._strata.append(self.strata[stratum])
        self._groups.append(_hash64(group))
        self._order.append(_hash64(self._seed + group))

    def assign(self, previous: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """The split index of every collected item, in the order they were added."""
        ids = np.frombuffer(self._ids, dtype=np.int64) if self._ids else np.zeros(0, np.int64)
        if not len(ids):
            return np.zeros(0, dtype=np.int8)
        prev_ids, prev_splits = previous if previous is not None else (None, None)
        ratios = tuple(self.config["ratios"][name] for name in SPLITS)
        return split_assign(
            item_ids=ids,
            strata=np.frombuffer(self._strata, dtype=np.int64),
            groups=np.frombuffer(self._groups, dtype=np.uint64),
            order=np.frombuffer(self._order, dtype=np.uint64),
            ratios=ratios,  # type: ignore[arg-type]
            previous_ids=prev_ids,
            previous_splits=prev_splits,
        )

    def summary(self, splits: np.ndarray, based_on: Release | None) -> dict[str, Any]:
        """The manifest's split section: config, the release it continues, counts."""
        labels = list(self.strata)
        strata = np.frombuffer(self._strata, dtype=np.int64) if self._ids else np.zeros(0, int)
        table = np.zeros((len(labels), len(SPLITS)), dtype=np.int64)
        np.add.at(table, (strata, splits.astype(np.int64)), 1)
        return {
            **self.config,
            "based_on": based_on.tag if based_on is not None else None,
            "counts": {name: int(table[:, k].sum()) for k, name in enumerate(SPLITS)},
            "labels": {
                label: {name: int(table[i, k]) for k, name in enumerate(SPLITS)}
                for i, label in enumerate(labels)
                if table[i].any()
            },
            "groups": len(np.unique(np.frombuffer(self._groups, dtype=np.uint64))),
        }


def previous_release(release: Release, config: Mapping[str, Any]) -> Release | None:
    """The latest earlier ready release of the project with the same split config."""
    return (
        Release.objects.filter(
            project_id=release.project_id,
            status=Release.Status.READY,
            version__lt=release.version,
            split=dict(config),
        )
        .order_by("-version")
        .first()
    )


def previous_splits(release: Release) -> tuple[np.ndarray, np.ndarray]:
    """(sorted item ids, split indexes) read from a ready release's stored data.jsonl."""
    record = release.files.filter(format="jsonl").first()
    ids, splits = array("q"), array("b")
    index = {name: k for k, name in enumerate(SPLITS)}
    if record is not None:
        with default_storage.open(record.path, "rb") as lines:
            for line in lines:
                row = json.loads(line)
                if row.get("split") in index:
                    ids.append(row["item_id"])
                    splits.append(index[row["split"]])
    id_array = np.frombuffer(ids, dtype=np.int64) if ids else np.zeros(0, np.int64)
    split_array = np.frombuffer(splits, dtype=np.int8) if splits else np.zeros(0, np.int8)
    order = np.argsort(id_array, kind="stable")
    return id_array[order], split_array[order]
