"""Which items and answers a release takes: its selection policy.

A policy is stored on `Release.policy` in the normalised form `policy_clean` returns:

    {"mode": "consensus" | "confidence" | "expert",
     "min_confidence": float | None,   # only in "confidence" mode, 0..1
     "exclude_flagged": bool}

Modes, applied per item after its consensus is computed (see the builders):
- "consensus" (the default; an empty policy means this): every released item with at least one
  counted answer. Its consensus is an expert decision made before the release was created,
  else the quality engine's ItemScore label, else, for an item the engine has not scored (no
  ItemScore, or an empty label), the majority vote over the counted answers with its vote share
  as confidence. Structured types use the type's own consensus rule; an item whose rule finds no
  value is kept with a null value (as before policies existed).
- "confidence": only items whose consensus confidence (1.0 for expert decisions, the engine's
  confidence, else the majority's vote share or the type rule's support) is >= min_confidence.
- "expert": only items an expert decided before the release was created.

`exclude_flagged` leaves out the answers of workers the quality engine acted on: an active
QualityAction (at the release's creation time) of a kind in EXCLUDING_KINDS or FLAG. Their
answers are not in the raw annotations, the agreement, the majority fallback or the counts; an
item with such an answer does not take the engine's label (which was computed with it) but the
majority of the remaining answers. An item left with no answers is dropped unless an expert
decided it. The worker set is read as of `release.created_at`, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import math
from typing import Any

from django.db.models import Q

from core.exceptions import ApplicationError
from quality.models import QualityAction, Release

MODES = ("consensus", "confidence", "expert")
DEFAULT_POLICY: dict[str, Any] = {
    "mode": "consensus",
    "min_confidence": None,
    "exclude_flagged": False,
}


def _fail(field: str, message: str) -> ApplicationError:
    return ApplicationError(f"{field}: {message}", code="invalid_policy", fields={field: [message]})


def policy_clean(raw: Any) -> dict[str, Any]:
    """The normalised policy for `raw` (a dict or None); ApplicationError naming the field.

    Field paths in errors are `policy.mode`, `policy.min_confidence`, `policy.exclude_flagged`.
    """
    if raw is None or raw == {}:
        return dict(DEFAULT_POLICY)
    if not isinstance(raw, dict):
        raise _fail("policy", "Must be an object with mode, min_confidence and exclude_flagged.")
    unknown = sorted(set(raw) - set(DEFAULT_POLICY))
    if unknown:
        raise _fail(f"policy.{unknown[0]}", "Unknown field.")
    mode = raw.get("mode", "consensus")
    if mode not in MODES:
        raise _fail("policy.mode", f"Use one of: {', '.join(MODES)}.")
    exclude = raw.get("exclude_flagged", False)
    if not isinstance(exclude, bool):
        raise _fail("policy.exclude_flagged", "Must be true or false.")
    minimum = raw.get("min_confidence")
    if mode == "confidence":
        if minimum is None or minimum == "":
            raise _fail("policy.min_confidence", "Required in confidence mode (0 to 1).")
        if isinstance(minimum, bool) or not isinstance(minimum, int | float):
            raise _fail("policy.min_confidence", "Must be a number between 0 and 1.")
        if not math.isfinite(minimum) or not 0 <= minimum <= 1:
            raise _fail("policy.min_confidence", "Must be between 0 and 1.")
        minimum = round(float(minimum), 6)
    elif minimum not in (None, ""):
        raise _fail("policy.min_confidence", "Only used in confidence mode.")
    else:
        minimum = None
    return {"mode": mode, "min_confidence": minimum, "exclude_flagged": exclude}


def policy_of(release: Release) -> dict[str, Any]:
    """The release's stored policy in normalised form (older releases store {})."""
    return policy_clean(release.policy or None)


def excluded_workers(release: Release, policy: dict[str, Any]) -> frozenset[int]:
    """Ids of the workers whose answers the release leaves out (empty unless exclude_flagged).

    Actions active when the release was created: created before it and not undone by then.
    """
    if not policy["exclude_flagged"]:
        return frozenset()
    from quality.services.recompute import EXCLUDING_KINDS  # recompute imports the engine

    kinds = [*EXCLUDING_KINDS, QualityAction.Kind.FLAG]
    active = QualityAction.objects.filter(
        Q(undone_at__isnull=True) | Q(undone_at__gt=release.created_at),
        project_id=release.project_id,
        kind__in=kinds,
        created_at__lte=release.created_at,
    )
    return frozenset(active.values_list("worker_id", flat=True))


def policy_admits(
    policy: dict[str, Any], *, confidence: float, reviewed: bool, has_value: bool = True
) -> bool:
    """True when an item with this consensus belongs in a release with this policy."""
    if policy["mode"] == "expert":
        return reviewed
    if policy["mode"] == "confidence":
        return has_value and confidence >= policy["min_confidence"]
    return True


def policy_describe(policy: dict[str, Any]) -> str:
    """One line saying what the policy selects (for the manifest and pages)."""
    if policy["mode"] == "expert":
        text = "only items decided by an expert"
    elif policy["mode"] == "confidence":
        text = f"only items whose consensus confidence is at least {policy['min_confidence']:g}"
    else:
        text = "every item with a consensus"
    if policy["exclude_flagged"]:
        text += "; answers of flagged or excluded workers left out"
    return text
