"""The contract every task type fulfils: one module per type declares it all.

A task type owns, for its kind of question:

- `options_clean`: the project's type options (scale, "none" allowed, relation labels…), validated
  with field errors keyed `options.<name>`;
- `item_data_clean`: what an item's `data` must hold (text, an image, a pair), keyed `data.<name>`;
- `value_clean`: one answer, validated against the configuration and the item (offsets inside the
  text, labels from the set, boxes inside the image…), returned in its stored form;
- `agreement`: the type's agreement figures over many items' answers;
- `consensus`: one item's consensus value from its (weighted) answers;
- `export_forms`: the extra file forms its ecosystem loads (spaCy JSONL, CoNLL, COCO…).

Types never read ids of items to decide anything, never touch the database and never import the
crowd or quality apps (the apps depend one way: annotation <- crowd <- quality). The quality engine
runs its truth-inference models on the types whose answers are categories (`categories`); the
others keep the consensus rule declared here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from django.core.exceptions import ValidationError

# Label colours offered when the owner gives none (colour-blind safe, readable on white).
DEFAULT_COLOURS = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#cc79a7",
    "#e69f00",
    "#56b4e9",
    "#7a5195",
    "#3f6e00",
)


@dataclass(frozen=True)
class OptionSpec:
    """One task-type option as a form field: `kind` is int, float, bool, list (of str), str
    or "choice" (then `choices` lists (value, label) pairs)."""

    name: str
    kind: type | str
    default: Any
    label: str
    help: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class TaskConfig:
    """A project's labeling configuration as the type sees it (no Django model)."""

    task_type: str
    labels: tuple[Mapping[str, str], ...] = ()  # {"value", "hotkey", "colour"}
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label_values(self) -> list[str]:
        return [label["value"] for label in self.labels]


@dataclass(frozen=True)
class Vote:
    """One worker's stored answer for one item, with the weight the quality engine gives it."""

    worker_id: int
    value: Mapping[str, Any]
    weight: float = 1.0


@dataclass(frozen=True)
class Consensus:
    """An item's consensus answer (in the type's stored form) and how strongly it is supported.

    `support` is in [0, 1]: the weighted share of answers that back the value (1.0 when every
    annotator agrees). None-valued consensus means "no answer is backed by a majority".
    """

    value: Mapping[str, Any]
    support: float


@dataclass(frozen=True)
class ExportRow:
    """One released item as export forms see it."""

    item_id: int
    data: Mapping[str, Any]
    value: Mapping[str, Any] | None  # the consensus value, None when the item has none
    split: str = ""


@dataclass(frozen=True)
class ExportForm:
    """An extra file form of a release, written by streaming rows into a binary file."""

    key: str  # "spacy", "conll", "coco", "preference"
    name: str
    filename: str  # inside the release directory
    content_type: str

    def write(self, rows: Iterable[ExportRow], out: IO[bytes], config: TaskConfig) -> None:
        raise NotImplementedError


class TaskType:
    """Base class of the task types. Subclasses set the class attributes and override methods."""

    key: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    # Which item fields the owner can use: ("text",), ("image",), ("text", "image").
    media: ClassVar[tuple[str, ...]] = ("text",)
    # True when answers are categories the quality engine's truth inference can model.
    categorical: ClassVar[bool] = False
    # Whether the type needs a label set (rating and free text do not).
    needs_labels: ClassVar[bool] = True
    # True when answers point into the item's text by character offsets (spans): whatever the
    # worker is shown (crowd.privacy masking) must keep every character where it was.
    text_offsets: ClassVar[bool] = False
    # True when checking an answer needs the item's data (offsets inside the text, boxes inside
    # the image): the submit path then reads the item before validating.
    checks_item: ClassVar[bool] = False
    # Item data keys holding image references (served by crowd:item-image; filled from zips).
    image_keys: ClassVar[tuple[str, ...]] = ("image",)
    # An answer the owner writes as a bare label in import files (gold "positive"), not as an
    # answer object: single label's plain gold.
    plain_gold: ClassVar[bool] = False
    # Answers are ordered categories (rating): ordinal agreement measures apply.
    ordinal: ClassVar[bool] = False
    # The widget template included by the labeling page: "annotation/widgets/<key>.html".
    widget: ClassVar[str] = ""
    export_forms: ClassVar[tuple[ExportForm, ...]] = ()
    # The options the project form offers for this type (options_clean is the authority).
    option_fields: ClassVar[tuple[OptionSpec, ...]] = ()

    # --- configuration and items -------------------------------------------------------------

    def options_clean(self, options: Any, *, labels: Sequence[Mapping[str, str]]) -> dict:
        """Validate the type's options; errors keyed `options.<name>`. Default: no options."""
        if options in (None, {}):
            return {}
        if not isinstance(options, dict):
            raise ValidationError({"options": ["Options are an object."]})
        unknown = sorted(options)
        raise ValidationError({f"options.{name}": ["Unknown option."] for name in unknown})

    def item_columns(self, config: TaskConfig) -> tuple[str, ...]:
        """The item data keys an import file's columns map to (matched ignoring case)."""
        text_field = config.options.get("field") or "text"
        columns: tuple[str, ...] = ()
        if "text" in self.media:
            columns += (text_field if isinstance(text_field, str) else "text",)
        if "image" in self.media:
            columns += ("image", "width", "height")
        return columns or ("text",)

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        """Check an item's data for this type; errors keyed `data.<field>`. Returns it."""
        raise NotImplementedError

    # --- answers -----------------------------------------------------------------------------

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        """Validate one answer; return its stored form. Errors name the field (`value.spans[2]`).

        `item_data` is None when the item is unknown (then checks that need it are skipped).
        """
        raise NotImplementedError

    # Categorical types with one category per answer: the key of the stored form that holds it
    # (the quality engine reads `value->>category_key` in SQL). Empty for multi-label and the
    # non-categorical types.
    category_key: ClassVar[str] = ""

    def category_values(self, *, config: TaskConfig) -> list[str]:
        """Every category an answer of this project can pick, in display order (as strings)."""
        return config.label_values

    def export_forms_for(self, config: TaskConfig) -> tuple[ExportForm, ...]:
        """The export forms that make sense for this configuration (default: all of them)."""
        return self.export_forms

    def value_of_category(self, category: str) -> dict:
        """The stored answer that picks `category` (the inverse of the category key)."""
        return {self.category_key: category}

    def categories(self, value: Mapping[str, Any], *, config: TaskConfig) -> list[str]:
        """The categories an answer picks (categorical types only): one for single label,
        pairwise and rating, the chosen set for multi-label."""
        raise NotImplementedError(f"{self.key} answers are not categorical")

    def summary(self, value: Mapping[str, Any] | None) -> str:
        """A short human-readable form of an answer, for tables and the review page."""
        return "" if value is None else str(dict(value))

    def relabel(self, value: Mapping[str, Any], mapping: Mapping[str, str | None]) -> dict | None:
        """The answer under a new label schema: every label passed through `mapping` (old value
        -> new value; absent means unchanged). None when a label maps to None (split or retired:
        the answer must be made again). Covers the label-bearing stored forms: "label",
        "labels", and the "label" of each of "spans" and "boxes"; types without labels return
        the value unchanged. Callers validate the result under the new configuration (a merge can
        make two spans equal; value_clean decides what that means for the type).
        """
        out = dict(value)

        def moved(label: str) -> str | None:
            return mapping.get(label, label)

        if isinstance(value.get("label"), str):
            new = moved(value["label"])
            if new is None:
                return None
            out["label"] = new
        if isinstance(value.get("labels"), list):
            new_labels = [moved(label) for label in value["labels"]]
            if any(label is None for label in new_labels):
                return None
            out["labels"] = list(dict.fromkeys(new_labels))
        for key in ("spans", "boxes"):
            parts = value.get(key)
            if not isinstance(parts, list):
                continue
            renamed = []
            for part in parts:
                new = moved(part["label"])
                if new is None:
                    return None
                renamed.append({**part, "label": new})
            out[key] = renamed
        return out

    # --- quality -----------------------------------------------------------------------------

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """Agreement figures over items' answers (item id -> votes); None when undefined.

        Keys are stable measure names ("alpha_nominal", "span_f1_exact", ...); values are floats
        or None, or a mapping label -> float | None for per-label figures.
        """
        raise NotImplementedError

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """The item's consensus from its answers (weights from the quality engine)."""
        raise NotImplementedError
