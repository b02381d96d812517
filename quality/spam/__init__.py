"""Spam and fraud signals per worker, and the owner's rules that act on them.

Pure NumPy/SciPy over sparse votes: three equal-length integer arrays (item, worker, label index)
plus optional per-vote timing and client keys. Nothing here loops over votes in Python; the
collusion signal uses sparse worker x item products, so it stays feasible for thousands of workers
and millions of votes. The quality engine calls :func:`spam_signals`, then :func:`rules_evaluate`
with the project's rules (validated by :func:`rules_clean`), and records each :class:`Hit`.
"""

from __future__ import annotations

from quality.spam.definitions import (  # noqa: F401 - the package's public names
    ACTIONS,
    BURST_GAP_SECONDS,
    CONFIDENCE,
    CONFUSION_PRIOR,
    DEFAULT_RULES,
    EVIDENCE_UNITS,
    MAX_PERIOD,
    MAX_RULES,
    MIN_SHARED_ITEMS,
    OPS,
    RULE_FIELDS,
    SIGNAL_RANGES,
    SIGNALS,
    Hit,
    Rule,
    WorkerSignals,
)
from quality.spam.rules import rule_label, rules_clean, rules_evaluate, rules_to_json
from quality.spam.signals import spam_signals

__all__ = [
    "ACTIONS",
    "DEFAULT_RULES",
    "OPS",
    "SIGNALS",
    "Hit",
    "Rule",
    "WorkerSignals",
    "rule_label",
    "rules_clean",
    "rules_evaluate",
    "rules_to_json",
    "spam_signals",
]
