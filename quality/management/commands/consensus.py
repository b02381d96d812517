"""Aggregate crowd labels from a CSV file: ``manage.py consensus LABELS.csv [--gold GOLD.csv]``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from quality.inference import DEFAULT_METHOD, METHODS, InferenceResult, expected_accuracy, infer


def _read_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Read the named columns of a CSV file as strings; clear errors for a missing file/column."""
    if not path.is_file():
        raise CommandError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column in columns:
            if column not in header:
                raise CommandError(
                    f"{path}: missing column {column!r} (header: {', '.join(header) or 'empty'})"
                )
        return [tuple(row[c] for c in columns) for row in reader]


class Command(BaseCommand):
    help = (
        "Infer one label per item from item,worker,label rows; writes item,label,confidence "
        "and, with --gold, prints the accuracy on the gold items."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("labels", help="CSV with header item,worker,label")
        parser.add_argument("--gold", help="CSV with header item,label (evaluation only)")
        parser.add_argument(
            "--method",
            choices=list(METHODS),
            default=DEFAULT_METHOD,
            help="; ".join(f"{key}: {name}" for key, name in METHODS.items()),
        )
        parser.add_argument("--out", help="output CSV (default: stdout)")
        parser.add_argument("--seed", type=int, default=0, help="tie-breaking seed")

    def handle(self, *args: Any, **options: Any) -> None:
        labels_path = Path(options["labels"])
        rows = _read_rows(labels_path, ("item", "worker", "label"))
        if not rows:
            raise CommandError(f"{labels_path}: no label rows")
        gold_rows: list[tuple[str, ...]] = []
        if options["gold"]:
            gold_rows = _read_rows(Path(options["gold"]), ("item", "label"))

        # Ids are opaque strings: dense indices in first-seen order, nothing else.
        item_index: dict[str, int] = {}
        worker_index: dict[str, int] = {}
        items = np.fromiter(
            (item_index.setdefault(r[0], len(item_index)) for r in rows), np.int64, len(rows)
        )
        workers = np.fromiter(
            (worker_index.setdefault(r[1], len(worker_index)) for r in rows), np.int64, len(rows)
        )
        classes = sorted({r[2] for r in rows} | {g[1] for g in gold_rows})
        class_index = {c: i for i, c in enumerate(classes)}
        labels = np.fromiter((class_index[r[2]] for r in rows), np.int64, len(rows))

        result: InferenceResult = infer(
            options["method"],
            items,
            workers,
            labels,
            n_items=len(item_index),
            n_workers=len(worker_index),
            n_classes=len(classes),
            seed=options["seed"],
        )
        self._write(result, list(item_index), classes, options["out"])

        if gold_rows:
            known = [(item_index[i], class_index[c]) for i, c in gold_rows if i in item_index]
            report = self.stdout if options["out"] else self.stderr
            if not known:
                report.write("no gold item occurs in the labels")
                return
            g_items = np.array([k[0] for k in known])
            g_labels = np.array([k[1] for k in known])
            accuracy = float((result.labels[g_items] == g_labels).mean())
            line = f"accuracy on {len(known)} gold items: {accuracy:.4f}"
            if options["method"] == "mv":
                expected = expected_accuracy(result.posteriors, g_items, g_labels)
                line += f" (expected with random ties: {expected:.4f})"
            report.write(line)

    def _write(
        self, result: InferenceResult, item_ids: list[str], classes: list[str], out: str | None
    ) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["item", "label", "confidence"])
        for item_id, chosen, confidence in zip(
            item_ids, result.labels.tolist(), result.confidence.tolist(), strict=True
        ):
            writer.writerow([item_id, classes[chosen], f"{confidence:.6f}"])
        if out:
            Path(out).write_text(buffer.getvalue(), encoding="utf-8")
        else:
            self.stdout.write(buffer.getvalue(), ending="")
