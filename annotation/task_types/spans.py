"""Spans: mark stretches of an item's text with labels, and labelled relations between them.

Stored answer: {"spans": [{"start", "end", "label"}], "relations": [{"from", "to", "label"}]}.
Offsets count characters (Unicode code points, as Python indexes strings; a browser converts
from UTF-16 units) into the item's text `data[field]`, end exclusive, 0 <= start < end <= len.
Spans are unique and sorted by (start, end, label); a relation's from/to index that sorted list.
Clients may send spans in any order, with from/to indexing the list as sent; error keys use the
positions as sent (`value.spans[2].end`, `value.relations[0].to`).

Agreement is measured between the annotators of an item, two at a time (items with one
annotator do not count; a figure is None when no pair exists), micro-averaged over all pairs of
all items (sum of 2 x matches over the sum of both sides' counts):

- `span_f1_exact`: spans match when start, end and label are equal;
- `span_f1_overlap`: a span matches a span of the other side with the same label that shares at
  least one character, one-to-one (a maximum matching), so it is never below the exact figure;
- `relation_f1`: relations as (from span, to span, label) triples of exact spans; None when the
  project has no relation labels;
- `span_f1_exact_by_label`: label -> exact F1 over the pairs where either side used the label.

An answer that marks nothing counts as one unit, "nothing here": two empty answers agree (F1 1.0
for that pair, with the weight of one span) and an empty answer matches nothing of a non-empty one.

Consensus keeps a span when the annotators who marked it exactly hold more than half of the
item's total weight, and a relation between kept spans likewise. Majorities never overlap when
the answers do not, so the consensus obeys `allow_overlap`; under `allow_none: false` an empty
consensus is no consensus (None).
"""

from __future__ import annotations

import itertools
import json
import re
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from django.core.exceptions import ValidationError

from annotation.task_types._common import TEXT_MAX
from annotation.task_types.base import (
    Consensus,
    ExportForm,
    ExportRow,
    OptionSpec,
    TaskConfig,
    TaskType,
    Vote,
)

SpanKey = tuple[int, int, str]  # (start, end, label)
RelationKey = tuple[SpanKey, SpanKey, str]  # (from span, to span, label)

OPTION_DEFAULTS: dict[str, Any] = {
    "relation_labels": [],
    "allow_overlap": True,
    "allow_none": True,
    "field": "text",
}
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RELATION_LABELS_MAX = 50
LABEL_LENGTH_MAX = 200
SPANS_MAX = 5000
RELATIONS_MAX = 5000
_TOKEN_RE = re.compile(r"\S+")


def spans_options(config: TaskConfig) -> dict[str, Any]:
    """The project's spans options with the defaults filled in."""
    return {**OPTION_DEFAULTS, **dict(config.options)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _relation_labels_clean(raw: Any) -> list[str]:
    where = "options.relation_labels"
    if not isinstance(raw, list):
        raise ValidationError({where: ["A list of relation label names."]})
    if len(raw) > RELATION_LABELS_MAX:
        raise ValidationError({where: [f"At most {RELATION_LABELS_MAX} relation labels."]})
    cleaned: list[str] = []
    for index, label in enumerate(raw):
        name = label.strip() if isinstance(label, str) else ""
        if not name or len(name) > LABEL_LENGTH_MAX:
            message = f"Relation label {index + 1} must be 1 to {LABEL_LENGTH_MAX} characters."
            raise ValidationError({where: [message]})
        if name in cleaned:
            raise ValidationError({where: [f"Duplicate relation label {name!r}."]})
        cleaned.append(name)
    return cleaned


def _text_length(item_data: Mapping[str, Any] | None, field: str) -> int | None:
    if item_data is None:
        return None
    text = item_data.get(field) if isinstance(item_data, Mapping) else None
    if not isinstance(text, str):
        raise ValidationError({f"data.{field}": ["The item has no text to mark."]})
    return len(text)


def _span_clean(
    span: Any, where: str, *, labels: Sequence[str], text_length: int | None
) -> tuple[SpanKey | None, dict[str, list[str]]]:
    """One span as sent: its key, or None and the errors found."""
    if not isinstance(span, dict):
        return None, {where: ["A span is an object with 'start', 'end' and 'label'."]}
    errors: dict[str, list[str]] = {}
    for name in sorted(set(span) - {"start", "end", "label"}):
        errors[f"{where}.{name}"] = ["Unknown field."]
    start, end, label = span.get("start"), span.get("end"), span.get("label")
    for name, offset in (("start", start), ("end", end)):
        if not _is_int(offset):
            errors[f"{where}.{name}"] = ["A whole number of characters."]
    if not errors:
        if start < 0:
            errors[f"{where}.start"] = ["The start is 0 or more."]
        elif end <= start:
            errors[f"{where}.end"] = ["The end must be after the start (a span is not empty)."]
        elif text_length is not None and end > text_length:
            errors[f"{where}.end"] = [f"Past the end of the text ({text_length} characters)."]
    if not isinstance(label, str) or label not in labels:
        allowed = ", ".join(labels)
        errors[f"{where}.label"] = [f"Unknown label {label!r}; use one of: {allowed}."]
    if errors:
        return None, errors
    return (start, end, label), {}


def _spans_clean(
    raw: Any, *, config: TaskConfig, options: Mapping[str, Any], text_length: int | None
) -> tuple[list[SpanKey], dict[int, int]]:
    """The spans as sent, checked; returns the sorted spans and sent index -> sorted index."""
    if not isinstance(raw, list):
        raise ValidationError({"value.spans": ["A list of spans (empty when nothing is marked)."]})
    if len(raw) > SPANS_MAX:
        raise ValidationError({"value.spans": [f"At most {SPANS_MAX} spans."]})
    if not raw and not options["allow_none"]:
        raise ValidationError({"value.spans": ["Mark at least one span."]})
    keys: list[SpanKey] = []
    errors: dict[str, list[str]] = {}
    first_at: dict[SpanKey, int] = {}
    for index, span in enumerate(raw):
        key, span_errors = _span_clean(
            span, f"value.spans[{index}]", labels=config.label_values, text_length=text_length
        )
        errors.update(span_errors)
        if key is None:
            continue
        if key in first_at:
            errors[f"value.spans[{index}]"] = [
                f"Same start, end and label as value.spans[{first_at[key]}]."
            ]
        first_at.setdefault(key, index)
        keys.append(key)
    if errors:
        raise ValidationError(errors)
    order = sorted(range(len(keys)), key=keys.__getitem__)
    if not options["allow_overlap"]:
        _overlaps_refuse(keys, order)
    return [keys[index] for index in order], {sent: new for new, sent in enumerate(order)}


def _overlaps_refuse(keys: Sequence[SpanKey], order: Sequence[int]) -> None:
    errors: dict[str, list[str]] = {}
    furthest: tuple[int, int] | None = None  # (end, sent index) of the span reaching furthest
    for index in order:
        start, end, _label = keys[index]
        if furthest is not None and start < furthest[0]:
            errors[f"value.spans[{index}]"] = [
                f"Overlaps value.spans[{furthest[1]}]; this project does not allow overlapping "
                "spans."
            ]
        if furthest is None or end > furthest[0]:
            furthest = (end, index)
    if errors:
        raise ValidationError(errors)


def _relation_clean(
    relation: Any, where: str, *, span_count: int, relation_labels: Sequence[str]
) -> dict[str, list[str]]:
    if not isinstance(relation, dict):
        return {where: ["A relation is an object with 'from', 'to' and 'label'."]}
    errors: dict[str, list[str]] = {}
    for name in sorted(set(relation) - {"from", "to", "label"}):
        errors[f"{where}.{name}"] = ["Unknown field."]
    for name in ("from", "to"):
        index = relation.get(name)
        if not _is_int(index):
            errors[f"{where}.{name}"] = ["The index of a span in value.spans."]
        elif not 0 <= index < span_count:
            errors[f"{where}.{name}"] = [f"No span {index}: the answer has {span_count} spans."]
    if not errors and relation["from"] == relation["to"]:
        errors[f"{where}.to"] = ["A relation joins two different spans."]
    label = relation.get("label")
    if not relation_labels:
        errors[f"{where}.label"] = ["This project has no relation labels."]
    elif not isinstance(label, str) or label not in relation_labels:
        allowed = ", ".join(relation_labels)
        errors[f"{where}.label"] = [f"Unknown relation label {label!r}; use one of: {allowed}."]
    return errors


def _relations_clean(
    raw: Any, *, position: Mapping[int, int], relation_labels: Sequence[str]
) -> list[tuple[int, int, str]]:
    """The relations as sent, checked; returned as (from, to, label) of the sorted spans."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError({"value.relations": ["A list of relations (may be empty)."]})
    if len(raw) > RELATIONS_MAX:
        raise ValidationError({"value.relations": [f"At most {RELATIONS_MAX} relations."]})
    errors: dict[str, list[str]] = {}
    first_at: dict[tuple[int, int, str], int] = {}
    for index, relation in enumerate(raw):
        where = f"value.relations[{index}]"
        relation_errors = _relation_clean(
            relation, where, span_count=len(position), relation_labels=relation_labels
        )
        errors.update(relation_errors)
        if relation_errors:
            continue
        key = (position[relation["from"]], position[relation["to"]], relation["label"])
        if key in first_at:
            errors[where] = [f"Same from, to and label as value.relations[{first_at[key]}]."]
        first_at.setdefault(key, index)
    if errors:
        raise ValidationError(errors)
    return list(first_at)


def _stored(spans: Sequence[SpanKey], relations: Iterable[tuple[int, int, str]]) -> dict:
    return {
        "spans": [{"start": start, "end": end, "label": label} for start, end, label in spans],
        "relations": [{"from": f, "to": t, "label": label} for f, t, label in sorted(relations)],
    }


def _parsed(value: Mapping[str, Any]) -> tuple[list[SpanKey], set[RelationKey]]:
    """A stored answer as span keys (stored order) and relation triples of span keys."""
    spans = [(span["start"], span["end"], span["label"]) for span in value.get("spans") or ()]
    relations = {
        (spans[rel["from"]], spans[rel["to"]], rel["label"]) for rel in value.get("relations") or ()
    }
    return spans, relations


def _overlap_matches(a: Sequence[SpanKey], b: Sequence[SpanKey]) -> int:
    """Size of a maximum one-to-one matching of same-label, overlapping spans (Kuhn)."""
    edges = [
        [j for j, (s2, e2, l2) in enumerate(b) if l2 == l1 and s1 < e2 and s2 < e1]
        for s1, e1, l1 in a
    ]
    owner: dict[int, int] = {}  # index in b -> index in a

    def augment(i: int, seen: set[int]) -> bool:
        for j in edges[i]:
            if j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(a)) if edges[i])


class _F1:
    """Micro-averaged F1 over pairs: sum of 2 x matches / sum of both sides' sizes."""

    def __init__(self) -> None:
        self.twice_matches = 0
        self.sizes = 0

    def add(self, size_a: int, size_b: int, matches: int, *, nothing_counts: bool = True) -> None:
        if nothing_counts and size_a == 0 and size_b == 0:
            self.twice_matches += 2  # both said "nothing here": one agreed unit
            self.sizes += 2
            return
        if nothing_counts:  # an empty side still said something: one unmatched unit
            size_a, size_b = max(size_a, 1), max(size_b, 1)
        self.twice_matches += 2 * matches
        self.sizes += size_a + size_b

    @property
    def value(self) -> float | None:
        return self.twice_matches / self.sizes if self.sizes else None


class SpacyJsonl(ExportForm):
    """spaCy / doccano style JSONL: one object per item, keys sorted, compact separators."""

    def write(self, rows: Iterable[ExportRow], out: IO[bytes], config: TaskConfig) -> None:
        field = spans_options(config)["field"]
        for row in rows:
            value = row.value or {}
            meta: dict[str, Any] = {"item_id": row.item_id}
            if row.split:
                meta["split"] = row.split
            line = {
                "text": row.data.get(field, ""),
                "spans": [
                    {"start": s["start"], "end": s["end"], "label": s["label"]}
                    for s in value.get("spans") or ()
                ],
                "relations": [
                    {"from": r["from"], "to": r["to"], "label": r["label"]}
                    for r in value.get("relations") or ()
                ],
                "meta": meta,
            }
            text = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            out.write(text.encode() + b"\n")


def bio_tags(text: str, spans: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(token, BIO tag) for the whitespace tokens of `text`.

    A span covers the tokens it shares a character with: its first token is B-<label>, the rest
    I-<label>. Spans that would share a token are resolved span by span, the longest span (in
    characters) first, then the earliest, then by label: a span losing any of its tokens is left
    out whole. Whitespace inside a label becomes "_" (the file is space-separated).
    """
    tokens = list(_TOKEN_RE.finditer(text))
    starts = [token.start() for token in tokens]
    ends = [token.end() for token in tokens]
    tags = ["O"] * len(tokens)
    ranked = sorted(spans, key=lambda s: (s["start"] - s["end"], s["start"], s["label"]))
    for span in ranked:
        first = bisect_right(ends, span["start"])  # first token ending after the start
        last = bisect_left(starts, span["end"]) - 1  # last token starting before the end
        if first > last or any(tag != "O" for tag in tags[first : last + 1]):
            continue
        label = re.sub(r"\s+", "_", span["label"])
        tags[first : last + 1] = [f"B-{label}"] + [f"I-{label}"] * (last - first)
    return [(token.group(), tag) for token, tag in zip(tokens, tags, strict=True)]


class ConllBio(ExportForm):
    """CoNLL 2003 style: "TOKEN TAG" lines with BIO tags (see `bio_tags`), each item opened by
    a "# item_id = N" line and closed by a blank line."""

    def write(self, rows: Iterable[ExportRow], out: IO[bytes], config: TaskConfig) -> None:
        field = spans_options(config)["field"]
        for row in rows:
            text = row.data.get(field, "")
            spans = (row.value or {}).get("spans") or ()
            lines = [f"# item_id = {row.item_id}"]
            lines += [f"{token} {tag}" for token, tag in bio_tags(text, spans)]
            out.write(("\n".join(lines) + "\n\n").encode())


class Spans(TaskType):
    key = "spans"
    name = "Spans"
    description = "Mark stretches of text with labels, and relations between them."
    media = ("text",)
    categorical = False
    needs_labels = True
    text_offsets = True
    checks_item = True
    widget = "annotation/widgets/spans.html"
    option_fields = (
        OptionSpec(
            "relation_labels",
            list,
            [],
            "Relation labels",
            "Labels of links between spans, separated by commas. Empty: no relations.",
        ),
        OptionSpec("allow_overlap", bool, True, "Spans may overlap"),
        OptionSpec("allow_none", bool, True, "Allow no span", "An item with no span is an answer."),
        OptionSpec("field", str, "text", "Text field", "The item data field holding the text."),
    )
    export_forms = (
        SpacyJsonl(
            key="spacy",
            name="spaCy JSONL",
            filename="spans.spacy.jsonl",
            content_type="application/x-ndjson",
        ),
        ConllBio(
            key="conll",
            name="CoNLL (BIO)",
            filename="spans.conll",
            content_type="text/plain; charset=utf-8",
        ),
    )

    def options_clean(self, options: Any, *, labels: Sequence[Mapping[str, str]]) -> dict:
        """relation_labels, allow_overlap, allow_none and field, with defaults filled in."""
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ValidationError({"options": ["Options are an object."]})
        errors = {f"options.{name}": ["Unknown option."] for name in options}
        cleaned = {**OPTION_DEFAULTS, "relation_labels": []}
        for name, given in options.items():
            if name not in OPTION_DEFAULTS:
                continue
            del errors[f"options.{name}"]
            if name in ("allow_overlap", "allow_none"):
                if not isinstance(given, bool):
                    errors[f"options.{name}"] = ["true or false."]
                cleaned[name] = given
            elif name == "field":
                if not isinstance(given, str) or not FIELD_RE.match(given):
                    errors["options.field"] = [
                        "The name of an item data field: letters, digits and _, at most 64."
                    ]
                cleaned[name] = given
            else:
                try:
                    cleaned[name] = _relation_labels_clean(given)
                except ValidationError as error:
                    errors.update(error.message_dict)
        if errors:
            raise ValidationError(errors)
        return cleaned

    def item_data_clean(self, data: Any, *, config: TaskConfig) -> dict:
        """The item's data holds a non-empty text under the `field` option."""
        field = spans_options(config)["field"]
        if not isinstance(data, dict):
            raise ValidationError({"data": ["An item's data is a JSON object."]})
        text = data.get(field)
        if not isinstance(text, str) or not text.strip():
            raise ValidationError({f"data.{field}": [f"{field!r} must be a non-empty string."]})
        if len(text) > TEXT_MAX:
            raise ValidationError({f"data.{field}": [f"At most {TEXT_MAX} characters."]})
        return data

    def value_clean(
        self, value: Any, *, config: TaskConfig, item_data: Mapping[str, Any] | None = None
    ) -> dict:
        """Spans checked and sorted, relations re-indexed to the sorted spans (module docs)."""
        options = spans_options(config)
        if not isinstance(value, dict):
            raise ValidationError({"value": ["An object with 'spans' and 'relations'."]})
        unknown = sorted(set(value) - {"spans", "relations"})
        if unknown:
            raise ValidationError({f"value.{name}": ["Unknown field."] for name in unknown})
        text_length = _text_length(item_data, options["field"])
        spans, position = _spans_clean(
            value.get("spans"), config=config, options=options, text_length=text_length
        )
        relations = _relations_clean(
            value.get("relations"), position=position, relation_labels=options["relation_labels"]
        )
        return _stored(spans, relations)

    def summary(self, value: Mapping[str, Any] | None) -> str:
        if value is None:
            return ""
        spans = value.get("spans") or ()
        if not spans:
            return "no spans"
        counts = Counter(span["label"] for span in spans)
        parts = [label if n == 1 else f"{label} ×{n}" for label, n in counts.items()]
        text = f"{len(spans)} span{'s' * (len(spans) != 1)}: {', '.join(parts)}"
        relations = len(value.get("relations") or ())
        if relations:
            text += f"; {relations} relation{'s' * (relations != 1)}"
        return text

    def relabel(self, value: Mapping[str, Any], mapping: Mapping[str, str | None]) -> dict | None:
        """As the base, then spans made equal by a merge become one (in stored order) and their
        relations follow; a relation joining two spans merged into one is dropped."""
        out = super().relabel(value, mapping)
        if out is None:
            return None
        spans, _ = _parsed(out)
        merged = sorted(set(spans))
        index = {key: position for position, key in enumerate(merged)}
        relations = {
            (index[spans[rel["from"]]], index[spans[rel["to"]]], rel["label"])
            for rel in out.get("relations") or ()
        }
        return _stored(merged, {rel for rel in relations if rel[0] != rel[1]})

    def agreement(
        self, answers: Mapping[int, Sequence[Vote]], *, config: TaskConfig
    ) -> dict[str, Any]:
        """Pairwise F1 figures (module docs); None when no item has two annotators."""
        exact, overlap, relation = _F1(), _F1(), _F1()
        by_label: defaultdict[str, _F1] = defaultdict(_F1)
        for votes in answers.values():
            parsed = [_parsed(vote.value) for vote in votes]
            for (spans_a, rels_a), (spans_b, rels_b) in itertools.combinations(parsed, 2):
                set_a, set_b = set(spans_a), set(spans_b)
                exact.add(len(set_a), len(set_b), len(set_a & set_b))
                overlap.add(len(set_a), len(set_b), _overlap_matches(spans_a, spans_b))
                relation.add(len(rels_a), len(rels_b), len(rels_a & rels_b))
                counts_a = Counter(label for _s, _e, label in set_a)
                counts_b = Counter(label for _s, _e, label in set_b)
                matched = Counter(label for _s, _e, label in set_a & set_b)
                for label in counts_a | counts_b:
                    by_label[label].add(
                        counts_a[label], counts_b[label], matched[label], nothing_counts=False
                    )
        has_relations = bool(spans_options(config)["relation_labels"])
        return {
            "span_f1_exact": exact.value,
            "span_f1_overlap": overlap.value,
            "relation_f1": relation.value if has_relations else None,
            "span_f1_exact_by_label": {
                label: by_label[label].value if label in by_label else None
                for label in config.label_values
            },
        }

    def consensus(self, votes: Sequence[Vote], *, config: TaskConfig) -> Consensus | None:
        """Weighted strict majority per span and per relation (module docs).

        support is the mean, over every span anyone marked, of the weighted share of the side
        that won (marked it / did not); 1.0 when nobody marked anything.
        """
        total = sum(max(float(vote.weight), 0.0) for vote in votes)
        if total <= 0:
            return None
        span_weight: defaultdict[SpanKey, float] = defaultdict(float)
        relation_weight: defaultdict[RelationKey, float] = defaultdict(float)
        for vote in votes:
            weight = max(float(vote.weight), 0.0)
            spans, relations = _parsed(vote.value)
            for span in set(spans):
                span_weight[span] += weight
            for rel in relations:
                relation_weight[rel] += weight
        majority = total / 2 + 1e-9 * total  # strictly more than half, robust to rounding
        kept = sorted(span for span, weight in span_weight.items() if weight > majority)
        if not kept and not spans_options(config)["allow_none"]:
            return None
        index = {span: position for position, span in enumerate(kept)}
        relations_kept = {
            (index[source], index[target], label)
            for (source, target, label), weight in relation_weight.items()
            if weight > majority and source in index and target in index
        }
        shares = [max(weight, total - weight) / total for weight in span_weight.values()]
        support = sum(shares) / len(shares) if shares else 1.0
        return Consensus(value=_stored(kept, relations_kept), support=support)


TASK_TYPE = Spans()
