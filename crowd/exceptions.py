"""Errors of the crowd app that views and the API turn into responses."""

from __future__ import annotations

from core.exceptions import NotAllowedError
from crowd.models import WorkerBlock


class WorkerBlockedError(NotAllowedError):
    """The worker is blocked from the project (403); the message carries the block's reason."""

    code = "blocked"

    def __init__(self, block: WorkerBlock) -> None:
        super().__init__(f"You are blocked from this project. Reason: {block.reason}")
        self.block = block
