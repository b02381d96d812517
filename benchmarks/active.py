"""Active learning, simulated: uncertainty and margin sampling against random sampling.

Data: a real labeled text set shipped with Django itself, its translation catalogues. Every
translated message (msgstr) of Django's own .po files in six close Romance languages (Spanish,
Portuguese, Italian, Catalan, Galician, French) is a text, labeled with its language by the
translators; short messages (under four words) and duplicates are dropped. The task: tell the
language of a sentence, with the same TF-IDF + logistic regression pipeline Assay trains
(quality.model.training.pipeline_build).

Simulation: a fixed 30% test set (by a hash of the text); from the rest, start with SEED_LABELS
random labels, then in rounds of --batch labels take random items (random sampling), the items
the current model is least sure of (uncertainty sampling: 1 - the top probability, Assay's
"uncertainty" serve rank) or those with the smallest gap between the two most probable classes
(margin sampling); retrain each round and record test accuracy against the number of labels.
Averaged over --repeats seeds. No database, no network.

    .venv/bin/python benchmarks/active.py [--batch 20] [--budget 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import random
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from quality.model.training import confidence_from_proba, pipeline_build  # noqa: E402

LANGUAGES = ("es", "pt", "it", "ca", "gl", "fr")
MIN_WORDS = 4
SEED_LABELS = 20
STRATEGIES = ("random", "uncertainty", "margin")
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{[^}]*\}|<[^>]+>")


def _po_messages(path: Path) -> list[str]:
    """The translated messages of one .po file (msgstr and msgstr[n], continuation lines joined)."""
    messages, current, in_msgstr = [], [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("msgstr"):
            if current:
                messages.append("".join(current))
            current, in_msgstr = [ast.literal_eval(line.split(" ", 1)[1])], True
        elif line.startswith('"') and in_msgstr:
            current.append(ast.literal_eval(line))
        else:
            if current:
                messages.append("".join(current))
            current, in_msgstr = [], False
    if current:
        messages.append("".join(current))
    return [m for m in messages if m]


def load_dataset() -> tuple[list[str], list[str]]:
    """(texts, languages) from Django's catalogues, deduplicated across languages."""
    root = Path(django.__file__).parent
    seen: dict[str, str | None] = {}
    for language in LANGUAGES:
        for path in sorted(root.glob(f"**/locale/{language}/LC_MESSAGES/django.po")):
            for message in _po_messages(path):
                text = " ".join(PLACEHOLDER.sub(" ", message).split())
                if len(text.split()) < MIN_WORDS:
                    continue
                # The same text in two languages is ambiguous: drop it from both.
                seen[text] = language if seen.get(text, language) == language else None
    pairs = sorted((text, lang) for text, lang in seen.items() if lang is not None)
    return [text for text, _ in pairs], [lang for _, lang in pairs]


def in_test_set(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10 < 3


def simulate(
    texts: list[str],
    labels: np.ndarray,
    *,
    test: np.ndarray,
    strategy: str,
    batch: int,
    budget: int,
    seed: int,
) -> list[tuple[int, float]]:
    """Accuracy on the test set after each round: [(labels used, accuracy), ...]."""
    rng = random.Random(seed)
    pool = [i for i in range(len(texts)) if not test[i]]
    labeled = rng.sample(pool, SEED_LABELS)
    while len(set(labels[labeled])) < 2:
        labeled = rng.sample(pool, SEED_LABELS)
    unlabeled = sorted(set(pool) - set(labeled))
    test_texts = [texts[i] for i in np.flatnonzero(test)]
    test_labels = labels[test]
    curve = []
    while True:
        model = pipeline_build(multi=False)
        model.fit([texts[i] for i in labeled], labels[labeled])
        accuracy = float(np.mean(model.predict(test_texts) == test_labels))
        curve.append((len(labeled), accuracy))
        if len(labeled) >= budget or not unlabeled:
            return curve
        if strategy in ("uncertainty", "margin"):
            proba = np.asarray(model.predict_proba([texts[i] for i in unlabeled]))
            if strategy == "uncertainty":
                rank = 1.0 - confidence_from_proba(proba, multi=False)  # Assay's serve_rank
            else:  # smallest gap between the two most probable classes first
                top_two = np.sort(proba, axis=1)[:, -2:]
                rank = 1.0 - (top_two[:, 1] - top_two[:, 0])
            picked_idx = np.argsort(-rank, kind="stable")[:batch]
            picked = [unlabeled[j] for j in picked_idx]
        else:
            picked = rng.sample(unlabeled, min(batch, len(unlabeled)))
        labeled += picked
        chosen = set(picked)
        unlabeled = [i for i in unlabeled if i not in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20, help="labels per round")
    parser.add_argument("--budget", type=int, default=400, help="labels in all")
    parser.add_argument("--repeats", type=int, default=5, help="seeds to average over")
    args = parser.parse_args()

    texts, languages = load_dataset()
    labels = np.asarray(languages, dtype=object)
    test = np.array([in_test_set(text) for text in texts])
    counts = {lang: languages.count(lang) for lang in LANGUAGES}
    print(
        f"Django translation catalogues, {len(texts)} texts of >= {MIN_WORDS} words in "
        f"{len(LANGUAGES)} languages {counts}; test set {int(test.sum())}, pool "
        f"{int((~test).sum())}; batch {args.batch}, budget {args.budget}, "
        f"{args.repeats} seeds"
    )
    full = pipeline_build(multi=False).fit(
        [t for t, h in zip(texts, test, strict=True) if not h], labels[~test]
    )
    ceiling = float(
        np.mean(full.predict([t for t, h in zip(texts, test, strict=True) if h]) == labels[test])
    )
    print(f"every pool label ({int((~test).sum())}): test accuracy {ceiling:.3f}")

    curves = {}
    for strategy in STRATEGIES:
        runs = [
            simulate(
                texts,
                labels,
                test=test,
                strategy=strategy,
                batch=args.batch,
                budget=args.budget,
                seed=seed,
            )
            for seed in range(args.repeats)
        ]
        sizes = [size for size, _ in runs[0]]
        curves[strategy] = (sizes, np.mean([[acc for _, acc in run] for run in runs], axis=0))

    sizes = curves["random"][0]
    print(f"\n{'labels':>7} {'random':>8} {'uncertainty':>12} {'margin':>8}")
    for index, size in enumerate(sizes):
        rand, unc, mar = (curves[strategy][1][index] for strategy in STRATEGIES)
        print(f"{size:>7} {rand:>8.3f} {unc:>12.3f} {mar:>8.3f}")
    for target in (0.8, 0.85, 0.9):
        needed = {
            strategy: next((s for s, a in zip(*curves[strategy], strict=True) if a >= target), None)
            for strategy in curves
        }
        print(f"labels to reach {target:.2f}: {needed}")


if __name__ == "__main__":
    main()
