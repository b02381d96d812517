"""Write use-cases of the quality engine (see recompute.py and actions.py)."""

from __future__ import annotations

from quality.services.actions import (
    GOLD_CANDIDATE_CONFIDENCE,
    gold_candidate_list,
    gold_promote,
    project_rules,
    quality_action_create,
    quality_action_get,
    quality_action_list,
    quality_action_undo,
    quality_config_update,
    rules_apply,
)
from quality.services.approval import (
    ApprovalResult,
    approval_decisions_apply,
    approval_reason_consensus,
    approval_reason_gold,
)
from quality.services.recompute import (
    FULL_RECOMPUTE_MAX_AGE,
    RECOMPUTE_DELAY_SECONDS,
    RECOMPUTE_LOCK_NAMESPACE,
    RECOMPUTE_PENDING_TTL_SECONDS,
    project_list_stale,
    quality_config_get,
    quality_recompute,
    quality_recompute_schedule,
    quality_recompute_scheduled,
    quality_recompute_stale_enqueue,
)
from quality.services.scores import UPSERT_BATCH_SIZE, skill_name

__all__ = [
    "ApprovalResult",
    "FULL_RECOMPUTE_MAX_AGE",
    "GOLD_CANDIDATE_CONFIDENCE",
    "approval_decisions_apply",
    "approval_reason_consensus",
    "approval_reason_gold",
    "RECOMPUTE_DELAY_SECONDS",
    "RECOMPUTE_LOCK_NAMESPACE",
    "RECOMPUTE_PENDING_TTL_SECONDS",
    "UPSERT_BATCH_SIZE",
    "gold_candidate_list",
    "gold_promote",
    "project_list_stale",
    "project_rules",
    "quality_action_create",
    "quality_action_get",
    "quality_action_list",
    "quality_action_undo",
    "quality_config_get",
    "quality_config_update",
    "quality_recompute",
    "quality_recompute_schedule",
    "quality_recompute_scheduled",
    "quality_recompute_stale_enqueue",
    "rules_apply",
    "skill_name",
]
