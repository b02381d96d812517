"""Pairwise: compare two texts or two images, for a preference or a duplicate judgement.

Item data: {"a": str, "b": str} (texts) or {"image_a": ref, "image_b": ref} (image references),
with an optional "prompt". Options: `mode` "preference" (choices "A", "B", and "tie" when
`allow_tie`, default true) or "duplicate" (choices "duplicate", "not_duplicate"; `allow_tie` has
no effect). Stored answer: {"choice": str}. Agreement: "alpha_nominal"; consensus: weighted
majority of the choices (a tie in weight has none).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from django.core.exceptions import ValidationError

from annotation.task_types._common import (
    TEXT_MAX,
    answer_object,
    category_codes,
    option_bool,
    options_with_defaults,
    vote_weight,
    votes_indexed,
    weighted_plurality,
)
from annotation.task_types._reliability import krippendorff_alpha
from annotation.task_types.base import (
    Consensus,
    ExportForm,
    ExportRow,
    OptionSpec,
    TaskConfig,
    TaskType,
    Vote,
)

MODES = ("preference", "duplicate")
SIDES = {"A": ("a", "b"), "B": ("b", "a")}  # choice -> (chosen side, rejected side)
DEFAULTS = {"mode": "preference", "allow_tie": True}
PROMPT_MAX = 10_000


def pairwise_choices(options: Mapping[str, Any]) -> list[str]:
    """The choices an answer may make under these options, in display order."""
    mode = options.get("mode", DEFAULTS["mode"])
    if mode == "duplicate":
        return ["duplicate", "not_duplicate"]
    allow_tie = options.get("allow_tie", DEFAULTS["allow_tie"])
    return ["A", "B", "tie"] if allow_tie else ["A", "B"]


def _side_clean(data: Mapping[str, Any], name: str, *, what: str, limit: int) -> None:
    side = data.get(name)
    if not isinstance(side, str) or not side.strip():
        raise ValidationError({f"data.{name}": [f"'{name}' must be a non-empty {what}."]})
    if len(side) > limit:
        raise ValidationError({f"data.{name}": [f"At most {limit} characters."]})


class PreferenceForm(ExportForm):
    """Preference pairs as reward-model and DPO trainers load them: one JSON object per item
    whose consensus picked A or B, {"prompt", "chosen", "rejected", "item_id"} (texts, or the
    image references for image pairs). Ties, items without consensus and duplicate-mode
    projects give no pair."""

    def write(self, rows: Iterable[ExportRow], out: IO[bytes], config: TaskConfig) -> None:
        for row in rows:
            choice = (row.value or {}).get("choice")
            if choice not in SIDES:
                continue
            chosen, rejected = SIDES[choice]
            image = "a" not in row.data
            pair = {
                "item_id": row.item_id,
                "prompt": str(row.data.get("prompt", "")),
                "chosen": row.data[f"image_{chosen}" if image else chosen],
                "rejected": row.data[f"image_{rejected}" if image else rejected],
            }
            line = json.dumps(pair, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            out.write(line.encode("utf-8") + b"\n")


PREFERENCE = PreferenceForm(
    key="preference",
    name="Preference pairs (chosen / rejected JSONL)",
    filename="preference.jsonl",
    content_type="application/x-ndjson",
)


class Pairwise(TaskType):
    key = "pairwise"
    name = "Pairwise comparison"
    description = "Compare two texts or two images: which is better, or are they duplicates."
    media = ("text", "image")
    categorical = True
    category_key = "choice"
    needs_labels = False
    widget = "annotation/widgets/pairwise.html"
    option_fields = (
        OptionSpec(
            "mode",
            "choice",
            "preference",
            "Question",
            choices=(("preference", "Which is better: A or B?"), ("duplicate", "Duplicates?")),
        ),
        OptionSpec("allow_tie", bool, True, "Allow a tie", "Preference mode only."),
    )
    export_forms = (PREFERENCE,)
    image_keys = ("image_a", "image_b")

    def item_columns(self, config: TaskConfig) -> tuple[str, ...]:
        return ("a", "b", "image_a", "image_b", "prompt")

    def export_forms_for(self, config: TaskConfig) -> tuple[ExportForm, ...]:
        """Preference pairs only make sense in preference mode."""
        mode = config.options.get("mode", DEFAULTS["mode"])
        return self.export_forms if mode == "preference" else ()

    def options_clean(self, options: Any, *, labels: Sequence[Mapping[str, str]]) -> dict:
        options = options_with_defaults(options, defaults=DEFAULTS)
        if options["mode"] not in MODES:
            allowed = ", ".join(MODES)
            raise ValidationError({"options.mode": [f"'mode' is one of: {allowed}."]})
        return {"mode": options["mode"], "allow_tie": option_bool(options, "allow_tie")}

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        if not isinstance(data, dict):
            raise ValidationError({"data": ["An item's data is a JSON object."]})
        texts = "a" in data or "b" in data
        images = "image_a" in data or "image_b" in data
        if texts and images:
            raise ValidationError({"data": ["Give two texts ('a', 'b') or two images, not both."]})
        if texts:
            for name in ("a", "b"):
                _side_clean(data, name, what="string", limit=TEXT_MAX)
        elif images:
            for name in ("image_a", "image_b"):
                _side_clean(data, name, what="storage path or URL", limit=2000)
        else:
            raise ValidationError(
                {"data": ["A pair needs 'a' and 'b' (texts) or 'image_a' and 'image_b' (images)."]}
            )
        prompt = data.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise ValidationError({"data.prompt": ["'prompt' is text."]})
        if prompt is not None and len(prompt) > PROMPT_MAX:
            raise ValidationError({"data.prompt": [f"At most {PROMPT_MAX} characters."]})
        return data

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        choice = answer_object(value, example='{"choice": "A"}').get("choice")
        choices = pairwise_choices(config.options)
        if not isinstance(choice, str) or choice not in choices:
            allowed = ", ".join(choices)
            raise ValidationError(
                {"value.choice": [f"Unknown choice {choice!r}; use one of: {allowed}."]}
            )
        return {"choice": choice}

    def category_values(self, *, config: TaskConfig) -> list[str]:
        return pairwise_choices(config.options)

    def categories(self, value: Mapping[str, Any], *, config: TaskConfig) -> list[str]:
        return [value["choice"]]

    def summary(self, value: Mapping[str, Any] | None) -> str:
        return "" if value is None else str(value.get("choice", ""))

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """Krippendorff's alpha (nominal) over the choices of items with two or more answers."""
        items, workers, votes = votes_indexed(answers)
        codes = category_codes(
            [vote.value["choice"] for vote in votes], order=pairwise_choices(config.options)
        )
        return {"alpha_nominal": krippendorff_alpha(items, workers, codes, level="nominal")}

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """Weighted majority of the choices; a tie in weight has no consensus."""
        winner = weighted_plurality([(vote.value["choice"], vote_weight(vote)) for vote in votes])
        if winner is None:
            return None
        choice, support = winner
        return Consensus(value={"choice": choice}, support=support)


TASK_TYPE = Pairwise()
