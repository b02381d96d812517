"""What the spam detector measures and how owners' rules are shaped: signals, actions, defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# A submission this soon after the same worker's previous one is faster than a human can work.
BURST_GAP_SECONDS = 1.0
# Answer cycles up to this length count as a repeated pattern.
MAX_PERIOD = 6
# Two workers are compared for collusion only when they share at least this many items.
MIN_SHARED_ITEMS = 10
# Pseudo-count pulling a worker's confusion towards the crowd's (collusion's expected agreement).
CONFUSION_PRIOR = 2.0
# One-sided confidence of the repeated-pattern and collusion bounds.
CONFIDENCE = 0.95

SIGNALS: dict[str, str] = {
    "gold_accuracy": "Share of the worker's answers on known gold items that match the gold.",
    "gold_kappa": (
        "Gold accuracy corrected for chance (Cohen's kappa: 0 = no better than the worker's "
        "label habits would be by luck, 1 = always right)."
    ),
    "consensus_agreement": "Share of the worker's answers that match the item's consensus label.",
    "consensus_kappa": (
        "Agreement with consensus corrected for chance (Cohen's kappa: 0 = no better than luck, "
        "1 = always agrees)."
    ),
    "reliability": "Probability that the worker's answer is right, from the consensus model.",
    "speed_ratio": (
        "Worker's median time on an item divided by the median worker's (low = too fast)."
    ),
    "straightlining": (
        "How far the share of the worker's most used label exceeds that label's share in "
        "consensus, towards always giving it (0 = as often as consensus, 1 = only that label)."
    ),
    "repeated_pattern": (
        "How much more often an answer repeats the one 1-6 answers before than the worker's "
        "label habits explain: lower 95% bound of the share of expected changes that did not "
        "happen (1 = a strict cycle, 0 = as expected)."
    ),
    "burst": (
        f"Share of the worker's submissions sent less than {BURST_GAP_SECONDS:g} s after "
        "their previous one."
    ),
    "shared_client": "Number of other workers who submitted from one of this worker's devices.",
    "collusion": (
        "Agreement with the most similar other worker beyond what both accuracies explain: "
        "lower 95% bound of the share of expected disagreements that did not happen "
        "(1 = identical answers, 0 = as expected)."
    ),
}

# What each signal's evidence counts, for rule labels.
EVIDENCE_UNITS: dict[str, str] = {
    "gold_accuracy": "gold answers",
    "gold_kappa": "gold answers",
    "consensus_agreement": "answers",
    "consensus_kappa": "answers",
    "reliability": "answers",
    "speed_ratio": "timed answers",
    "straightlining": "answers",
    "repeated_pattern": "answers",
    "burst": "submissions",
    "shared_client": "answers",
    "collusion": "shared items",
}

# Range a threshold must lie in to be meaningful (None: unbounded).
SIGNAL_RANGES: dict[str, tuple[float | None, float | None]] = {
    "gold_accuracy": (0.0, 1.0),
    "gold_kappa": (-1.0, 1.0),
    "consensus_agreement": (0.0, 1.0),
    "consensus_kappa": (-1.0, 1.0),
    "reliability": (0.0, 1.0),
    "speed_ratio": (0.0, None),
    "straightlining": (None, 1.0),
    "repeated_pattern": (-1.0, 1.0),
    "burst": (0.0, 1.0),
    "shared_client": (0.0, None),
    "collusion": (-1.0, 1.0),
}

ACTIONS: dict[str, str] = {
    "flag": "flag for review",
    "exclude": "exclude labels",
    "requeue": "re-queue items",
    "block": "block worker",
}
OPS = ("<", ">")
RULE_FIELDS = ("signal", "op", "threshold", "min_evidence", "action")
MAX_RULES = 50


@dataclass(frozen=True)
class WorkerSignals:
    """Per-worker signal values (NaN when unknown), their evidence counts, collusion partners."""

    values: dict[str, np.ndarray]
    evidence: dict[str, np.ndarray]
    partners: np.ndarray


@dataclass(frozen=True)
class Rule:
    """Act on workers whose `signal` is `op` `threshold` with at least `min_evidence` behind it."""

    signal: str
    op: str
    threshold: float
    min_evidence: int
    action: str


@dataclass(frozen=True)
class Hit:
    """One rule firing on one worker, with JSON-able evidence for the owner."""

    worker: int
    rule: Rule
    evidence: dict[str, Any]


# Defaults that work whatever the number of classes: chance-corrected agreement (kappa) rather
# than raw accuracy, and cautious evidence minimums. Only gold can justify excluding labels on
# its own; everything else flags for the owner. See benchmarks/spam_detection.py for the figures.
DEFAULT_RULES: list[Rule] = [
    Rule("gold_kappa", "<", 0.2, 20, "exclude"),
    Rule("consensus_kappa", "<", 0.2, 50, "flag"),
    Rule("straightlining", ">", 0.9, 50, "flag"),
    Rule("repeated_pattern", ">", 0.7, 30, "flag"),
    Rule("speed_ratio", "<", 0.25, 20, "flag"),
    Rule("burst", ">", 0.5, 20, "flag"),
    Rule("shared_client", ">", 2, 10, "flag"),
    Rule("collusion", ">", 0.7, 30, "flag"),
]
