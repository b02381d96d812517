"""Write use-cases of the crowd: members, the assignment engine, blocks, standings and skills.

Split by sub-domain: `members` (project members and labeling pools), `claims` (claiming work,
submitting, skipping, expiring reservations), `blocks` (blocks, standings and skills). Lock order,
everywhere: an Assignment row before its Item row; Item rows in primary-key order.
"""

from __future__ import annotations

from crowd.exceptions import WorkerBlockedError
from crowd.services.blocks import (
    UPSERT_BATCH,
    project_worker_block,
    worker_block,
    worker_is_blocked,
    worker_skills_set,
    worker_standings_set,
    worker_unblock,
)
from crowd.services.claims import (
    CLAIM_ATTEMPTS,
    assignment_claim_next,
    assignment_deadline,
    assignment_expire_stale,
    assignment_list_ready,
    assignment_skip,
    assignment_submit,
    client_key_compute,
)
from crowd.services.members import (
    project_default_pool,
    project_member_add,
    worker_may_label,
)

__all__ = [
    "CLAIM_ATTEMPTS",
    "UPSERT_BATCH",
    "WorkerBlockedError",
    "assignment_claim_next",
    "assignment_deadline",
    "assignment_expire_stale",
    "assignment_list_ready",
    "assignment_skip",
    "assignment_submit",
    "client_key_compute",
    "project_default_pool",
    "project_member_add",
    "project_worker_block",
    "worker_block",
    "worker_is_blocked",
    "worker_may_label",
    "worker_skills_set",
    "worker_standings_set",
    "worker_unblock",
]
