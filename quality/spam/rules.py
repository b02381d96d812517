"""Owners' rules over the signals: validation, labels, JSON, and evaluation into hits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError

from quality.spam.definitions import (
    ACTIONS,
    EVIDENCE_UNITS,
    MAX_RULES,
    OPS,
    RULE_FIELDS,
    SIGNAL_RANGES,
    SIGNALS,
    Hit,
    Rule,
    WorkerSignals,
)

# --- rules -------------------------------------------------------------------------------------


def rule_label(rule: Rule) -> str:
    """Human label, e.g. "gold accuracy < 0.5 (≥ 10 gold answers) → exclude labels"."""
    unit = EVIDENCE_UNITS.get(rule.signal, "observations")
    name = rule.signal.replace("_", " ")
    action = ACTIONS.get(rule.action, rule.action)
    return f"{name} {rule.op} {rule.threshold:g} (≥ {rule.min_evidence} {unit}) → {action}"


def rules_to_json(rules: list[Rule]) -> list[dict[str, Any]]:
    """Rules as the JSON list stored in QualityConfig.spam_rules."""
    return [
        {
            "signal": r.signal,
            "op": r.op,
            "threshold": float(r.threshold),
            "min_evidence": int(r.min_evidence),
            "action": r.action,
        }
        for r in rules
    ]


def rules_clean(raw: object) -> list[Rule]:
    """Validate the owner's rules (a list of dicts); raise ValidationError naming rule and field."""
    if raw is None or raw == "":
        return []
    if not isinstance(raw, list | tuple):
        raise ValidationError({"spam_rules": ["Rules must be a list of rule objects."]})
    if len(raw) > MAX_RULES:
        raise ValidationError({"spam_rules": [f"At most {MAX_RULES} rules (got {len(raw)})."]})
    errors: list[str] = []
    rules: list[Rule] = []
    for number, entry in enumerate(raw, start=1):
        rule, problems = _rule_clean(entry)
        errors.extend(f"Rule {number}: {problem}" for problem in problems)
        if rule is not None:
            if rule in rules:
                errors.append(f"Rule {number}: repeats rule {rules.index(rule) + 1}.")
            rules.append(rule)
    if errors:
        raise ValidationError({"spam_rules": errors})
    return rules


def _rule_clean(entry: object) -> tuple[Rule | None, list[str]]:
    if not isinstance(entry, dict):
        return None, [f"must be an object with fields {', '.join(RULE_FIELDS)}."]
    problems = [f"unknown field '{key}'." for key in entry if key not in RULE_FIELDS]
    problems += [f"{key} is missing." for key in RULE_FIELDS if key not in entry]
    signal, op, action = entry.get("signal"), entry.get("op"), entry.get("action")
    if "signal" in entry and signal not in SIGNALS:
        problems.append(f"signal {signal!r} is not one of {', '.join(SIGNALS)}.")
    if "op" in entry and op not in OPS:
        problems.append(f"op {op!r} must be '<' or '>'.")
    if "action" in entry and action not in ACTIONS:
        problems.append(f"action {action!r} must be one of {', '.join(ACTIONS)}.")
    threshold = _number(entry.get("threshold"))
    if "threshold" in entry:
        problems += _threshold_problems(entry.get("threshold"), threshold, signal)
    min_evidence = _whole(entry.get("min_evidence"))
    if "min_evidence" in entry and (min_evidence is None or min_evidence < 0):
        problems.append(f"min_evidence {entry.get('min_evidence')!r} must be a whole number ≥ 0.")
    if problems or threshold is None or min_evidence is None:
        return None, problems
    rule = Rule(str(signal), str(op), threshold, min_evidence, str(action))
    return rule, []


def _threshold_problems(raw: object, threshold: float | None, signal: object) -> list[str]:
    if threshold is None:
        return [f"threshold {raw!r} must be a finite number."]
    low, high = SIGNAL_RANGES.get(signal, (None, None)) if isinstance(signal, str) else (None, None)
    if (low is not None and threshold < low) or (high is not None and threshold > high):
        if low is not None and high is not None:
            bounds = f"between {low:g} and {high:g}"
        else:
            bounds = f"at least {low:g}" if low is not None else f"at most {high:g}"
        return [f"threshold {threshold:g} for {signal} must be {bounds}."]
    return []


def _number(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _whole(raw: object) -> int | None:
    value = _number(raw)
    if value is None or value != int(value):
        return None
    return int(value)


def rules_evaluate(signals: WorkerSignals, rules: list[Rule]) -> list[Hit]:
    """Every (worker, rule) where the rule fires, ordered by worker then rule order."""
    hits: list[tuple[int, int, Hit]] = []
    for position, rule in enumerate(rules):
        values = signals.values.get(rule.signal)
        if values is None:
            continue
        evidence = signals.evidence[rule.signal]
        with np.errstate(invalid="ignore"):
            beyond = values < rule.threshold if rule.op == "<" else values > rule.threshold
        fired = np.flatnonzero(beyond & np.isfinite(values) & (evidence >= rule.min_evidence))
        for worker in fired.tolist():
            hits.append((worker, position, Hit(worker, rule, _hit_evidence(signals, rule, worker))))
    hits.sort(key=lambda entry: entry[:2])
    return [hit for _, _, hit in hits]


def _json_number(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def _hit_evidence(signals: WorkerSignals, rule: Rule, worker: int) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "rule": rule_label(rule),
        "signal": rule.signal,
        "value": _json_number(signals.values[rule.signal][worker]),
        "evidence": int(signals.evidence[rule.signal][worker]),
        "op": rule.op,
        "threshold": float(rule.threshold),
        "min_evidence": int(rule.min_evidence),
        "signals": {
            name: {
                "value": _json_number(values[worker]),
                "evidence": int(signals.evidence[name][worker]),
            }
            for name, values in signals.values.items()
        },
    }
    if rule.signal == "collusion" and signals.partners[worker] >= 0:
        evidence["partner"] = int(signals.partners[worker])
    return evidence
