"""Truth-inference accuracy on the shared crowd datasets next to crowd-kit's, and 1M-label speed.

For every dataset in ``../shared/datasets/crowd`` it prints each of our methods' accuracy on the
gold items next to crowd-kit's aggregators, in two settings: unsupervised, and with 10% of the
gold items given as known answers (accuracy on the other 90%, mean of 5 seeds). Then it times
Dawid-Skene on 1,000,000 synthetic labels (100,000 items x 10, 2,000 workers, 5 classes, 10%
spammers) with its peak memory, and crowd-kit's DawidSkene on the same data in the same run
(default early stop, and 100 iterations).

crowd-kit is a benchmark-only dependency: install it in a separate venv and run this script with
that interpreter (``quality.inference`` needs only NumPy and SciPy)::

    python3 -m venv /work/benchvenv
    /work/benchvenv/bin/pip install crowd-kit==1.4.2 "scikit-learn<1.6" numpy scipy
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /work/benchvenv/bin/python benchmarks/quality.py \
        --write-reference tests/quality/data/crowdkit_reference.json

Without crowd-kit (e.g. ``.venv/bin/python benchmarks/quality.py``) the crowd-kit columns are
read from that reference file instead of measured. Items are re-keyed to integers in a seeded
random order before anything is fitted: several datasets leak gold through their item ids.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_bench import peak_rss_mib, synthesise  # noqa: E402

from quality.inference import METHODS, dawid_skene, expected_accuracy, infer  # noqa: E402

CROWD = ROOT.parent / "shared" / "datasets" / "crowd"
REFERENCE = ROOT / "tests" / "quality" / "data" / "crowdkit_reference.json"
DATASETS = ["bluebirds", "rte", "product", "dog", "web", "adult", "ms"]
SEEDS = (0, 1, 2, 3, 4)
GOLD_SHARE = 0.1
REKEY_SEED = 12345
# crowd-kit aggregators measured; the default must match or beat the best of BEST_OF (the ones
# the issue names). DS-100 (DawidSkene forced to 100 iterations) is for the DS comparison.
CROWDKIT = ["MV rand-tie", "Wawa", "DS", "DS-100", "1coinDS", "GLAD", "MACE", "ZBS"]
BEST_OF = ["MV rand-tie", "Wawa", "DS", "1coinDS", "GLAD", "MACE", "ZBS"]


def load(name: str, crowd: Path = CROWD) -> dict[str, Any]:
    """A dataset as index arrays; items re-keyed in a seeded random order, classes sorted."""
    with (crowd / name / "labels.csv").open(newline="") as handle:
        rows = [(r["item"], r["worker"], r["label"]) for r in csv.DictReader(handle)]
    with (crowd / name / "gold.csv").open(newline="") as handle:
        gold = [(r["item"], r["label"]) for r in csv.DictReader(handle)]
    item_ids = list(dict.fromkeys(r[0] for r in rows))
    order = np.random.default_rng(REKEY_SEED).permutation(len(item_ids))
    items = dict(zip(item_ids, order.tolist(), strict=True))
    workers: dict[str, int] = {}
    classes = {c: i for i, c in enumerate(sorted({r[2] for r in rows} | {g[1] for g in gold}))}
    return {
        "items": np.array([items[r[0]] for r in rows]),
        "workers": np.array([workers.setdefault(r[1], len(workers)) for r in rows]),
        "labels": np.array([classes[r[2]] for r in rows]),
        "gold_items": np.array([items[g[0]] for g in gold]),
        "gold_labels": np.array([classes[g[1]] for g in gold]),
        "sizes": {"n_items": len(items), "n_workers": len(workers), "n_classes": len(classes)},
    }


def gold_split(n_gold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(given, held-out) positions into the gold list: 10% given, the rest scored."""
    order = np.random.default_rng(seed).permutation(n_gold)
    n_given = max(1, round(GOLD_SHARE * n_gold))
    return order[:n_given], order[n_given:]


def our_accuracy(method: str, data: dict[str, Any]) -> dict[str, float]:
    """Tie-averaged accuracy of one of our methods, unsupervised and with 10% gold given."""
    args = (data["items"], data["workers"], data["labels"])
    g_items, g_labels = data["gold_items"], data["gold_labels"]
    fit = infer(method, *args, **data["sizes"])
    unsupervised = expected_accuracy(fit.posteriors, g_items, g_labels)
    scores = []
    for seed in SEEDS:
        given, held = gold_split(g_items.size, seed)
        fit = infer(method, *args, **data["sizes"], gold=(g_items[given], g_labels[given]))
        scores.append(expected_accuracy(fit.posteriors, g_items[held], g_labels[held]))
    return {"unsupervised": unsupervised, "gold": float(np.mean(scores))}


def crowdkit_accuracy(data: dict[str, Any], only: list[str]) -> dict[str, dict[str, float]]:
    """crowd-kit's aggregators (those in `only`) in both settings.

    Only DawidSkene accepts known answers (``true_labels``); the others are fitted once and
    scored on each seed's held-out 90%. "DS-100" passes ``tol=-inf``: with ``tol=0`` crowd-kit
    still stops as soon as its ELBO estimate falls.
    """
    import pandas as pd
    from crowdkit.aggregation import (
        GLAD,
        MACE,
        DawidSkene,
        OneCoinDawidSkene,
        Wawa,
        ZeroBasedSkill,
    )

    models = {
        "Wawa": Wawa,
        "DS": lambda: DawidSkene(n_iter=100),
        "DS-100": lambda: DawidSkene(n_iter=100, tol=-np.inf),
        "1coinDS": lambda: OneCoinDawidSkene(n_iter=100),
        "GLAD": GLAD,
        "MACE": MACE,
        "ZBS": ZeroBasedSkill,
    }
    frame = pd.DataFrame(
        {"task": data["items"], "worker": data["workers"], "label": data["labels"]}
    )
    g_items, g_labels = data["gold_items"], data["gold_labels"]
    counts = np.zeros((data["sizes"]["n_items"], data["sizes"]["n_classes"]))
    np.add.at(counts, (data["items"], data["labels"]), 1.0)

    def score(predicted: pd.Series, positions: np.ndarray) -> float:
        guessed = predicted.reindex(g_items[positions]).to_numpy()
        return float((guessed == g_labels[positions]).mean())

    fitted = {name: models[name]().fit_predict(frame) for name in only if name in models}
    everything = np.arange(g_items.size)
    unsupervised = {name: score(pred, everything) for name, pred in fitted.items()}
    per_seed: dict[str, list[float]] = {name: [] for name in only}
    for seed in SEEDS:
        given, held = gold_split(g_items.size, seed)
        known = pd.Series(g_labels[given], index=g_items[given])
        for name in only:
            if name == "MV rand-tie":
                per_seed[name].append(expected_accuracy(counts, g_items[held], g_labels[held]))
            elif name in ("DS", "DS-100"):
                predicted = models[name]().fit_predict(frame, true_labels=known)
                per_seed[name].append(score(predicted, held))
            else:
                per_seed[name].append(score(fitted[name], held))
    if "MV rand-tie" in only:
        unsupervised["MV rand-tie"] = expected_accuracy(counts, g_items, g_labels)
    gold = {name: float(np.mean(values)) for name, values in per_seed.items()}
    return {"unsupervised": unsupervised, "gold": gold}


def accuracy_tables(
    names: list[str], reference: dict[str, Any], measure: list[str]
) -> dict[str, Any]:
    """Print ours next to crowd-kit's per setting; return crowd-kit's figures (measured or read)."""
    ours: dict[str, dict[str, dict[str, float]]] = {}
    theirs: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        data = load(name)
        started = time.perf_counter()
        ours[name] = {m: our_accuracy(m, data) for m in METHODS}
        took = time.perf_counter() - started
        old = reference.get("datasets", {}).get(name, {})
        theirs[name] = {setting: dict(old.get(setting, {})) for setting in ("unsupervised", "gold")}
        if measure:
            started = time.perf_counter()
            for setting, figures in crowdkit_accuracy(data, measure).items():
                theirs[name][setting].update(figures)
            print(f"{name}: ours {took:.1f} s, crowd-kit {time.perf_counter() - started:.1f} s")
    for setting, title in (("unsupervised", "unsupervised"), ("gold", "10% gold given")):
        print(f"\n### Accuracy, {title}\n")
        print("| dataset | " + " | ".join(METHODS) + " | crowd-kit: " + " | ".join(CROWDKIT))
        print("|---" * (1 + len(METHODS) + len(CROWDKIT)) + "|")
        for name in names:
            cells = [f"{ours[name][m][setting]:.4f}" for m in METHODS]
            ref = theirs.get(name, {}).get(setting, {})
            best = max((ref[c] for c in BEST_OF if c in ref), default=float("nan"))
            cells += [f"{ref[c]:.4f}" if c in ref else "-" for c in CROWDKIT]
            verdict = (
                ""
                if not ref
                else (
                    "  auto >= best" if ours[name]["auto"][setting] >= best else "  AUTO BELOW BEST"
                )
            )
            print(f"| {name} | " + " | ".join(cells) + f" |{verdict}")
    return theirs


def speed(args: argparse.Namespace, measure_crowdkit: bool) -> None:
    """Dawid-Skene on 1M synthetic labels: time, memory, accuracy; crowd-kit on the same data."""
    items, workers, labels, truth = synthesise(
        n_items=args.items,
        per_item=args.per_item,
        n_workers=args.workers,
        n_classes=args.classes,
        spam=args.spam,
        seed=42,
    )
    sizes = {"n_items": args.items, "n_workers": args.workers, "n_classes": args.classes}
    rss_before = peak_rss_mib()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        ds = dawid_skene(items, workers, labels, **sizes)
        timings.append(time.perf_counter() - started)
    ours = min(timings)
    rss_after = peak_rss_mib()
    gc.collect()
    tracemalloc.start()
    dawid_skene(items, workers, labels, **sizes)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    accuracy = float((ds.labels == truth).mean())
    auto_started = time.perf_counter()
    auto = infer("auto", items, workers, labels, **sizes)
    auto_seconds = time.perf_counter() - auto_started
    print(
        f"\n### Dawid-Skene on {labels.size:,} labels ({args.items:,} items, {args.workers:,} "
        f"workers, {args.classes} classes, {args.spam:.0%} spammers), one BLAS thread\n"
    )
    print(
        f"ours: {ours:.2f} s (best of 3), {ds.iterations} iterations (converged: "
        f"{ds.converged}), accuracy {accuracy:.4f}"
    )
    print(
        f"ours: peak RSS {rss_after:.0f} MiB (data alone {rss_before:.0f} MiB); "
        f"peak allocated inside dawid_skene {traced_peak / 2**20:.0f} MiB"
    )
    print(
        f"auto: {auto_seconds:.2f} s, accuracy {(auto.labels == truth).mean():.4f} "
        f"({auto.details.get('chosen', auto.method)})"
    )
    if not measure_crowdkit:
        return
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    frame = pd.DataFrame({"task": items, "worker": workers, "label": labels})
    for title, model in (
        ("default early stop", DawidSkene(n_iter=100)),
        ("100 iterations", DawidSkene(n_iter=100, tol=-np.inf)),
    ):
        started = time.perf_counter()
        predicted = model.fit_predict(frame)
        seconds = time.perf_counter() - started
        their = float((predicted.reindex(np.arange(args.items)).to_numpy() == truth).mean())
        print(
            f"crowd-kit DawidSkene, {title}: {seconds:.2f} s, {len(model.loss_history_)} "
            f"iterations, accuracy {their:.4f}; ratio crowd-kit / ours = {seconds / ours:.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--write-reference", type=Path, help="write measured crowd-kit figures")
    parser.add_argument("--no-crowdkit", action="store_true", help="read crowd-kit's figures")
    parser.add_argument(
        "--crowdkit-methods",
        nargs="*",
        default=CROWDKIT,
        help="measure only these crowd-kit aggregators (the others are kept from --reference)",
    )
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--per-item", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2_000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--spam", type=float, default=0.10)
    args = parser.parse_args()

    try:
        import crowdkit
    except ImportError:
        crowdkit = None
    measure = crowdkit is not None and not args.no_crowdkit
    reference = json.loads(args.reference.read_text()) if args.reference.is_file() else {}
    print(
        f"BLAS threads: OMP={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"OPENBLAS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; crowd-kit: "
        f"{crowdkit.__version__ if measure else 'figures read from ' + str(args.reference)}"
    )
    if not args.no_accuracy:
        theirs = accuracy_tables(args.datasets, reference, args.crowdkit_methods if measure else [])
        if measure and args.write_reference:
            import pandas as pd

            merged = dict(reference.get("datasets", {})) | theirs
            document = {
                "crowdkit": crowdkit.__version__,
                "pandas": pd.__version__,
                "protocol": (
                    "items re-keyed by benchmarks/quality.py load(); accuracy on gold items; "
                    "'gold' = 10% of gold items given (DawidSkene via true_labels, the others "
                    "cannot use them), accuracy on the other 90%, mean of seeds 0-4; "
                    "'MV rand-tie' is tie-averaged"
                ),
                "methods": CROWDKIT,
                "datasets": merged,
            }
            args.write_reference.parent.mkdir(parents=True, exist_ok=True)
            args.write_reference.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
            print(f"\nwrote {args.write_reference}")
    if not args.no_speed:
        speed(args, measure)


if __name__ == "__main__":
    main()
