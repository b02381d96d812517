"""Recomputes that could not be queued (Redis or the broker down) are queued once it returns.

benchmarks/drill_redis.py proves the same with real processes: a private Redis SIGKILLed
under load, then restarted, and ProjectScore catching up with no further submission.
"""

from __future__ import annotations

import logging
import time
from unittest import mock

import pytest

from quality.services import recompute
from quality.services.recompute import RECOMPUTE_DELAY_SECONDS, quality_recompute_schedule
from quality.tasks import quality_recompute_task


class FlakyCache:
    """A cache that raises like an unreachable Redis while `down` is set."""

    def __init__(self) -> None:
        self.down = True
        self.keys: set[str] = set()

    def add(self, key: str, value: object, timeout: float | None = None) -> bool:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        if key in self.keys:
            return False
        self.keys.add(key)
        return True

    def delete(self, key: str) -> None:
        if self.down:
            raise ConnectionError("Connection refused.")
        self.keys.discard(key)


@pytest.fixture
def flaky_cache():
    fake = FlakyCache()
    with (
        mock.patch.object(recompute, "cache", fake),
        mock.patch.object(recompute, "RECOMPUTE_RETRY_FIRST_SECONDS", 0.01),
        mock.patch.object(recompute, "RECOMPUTE_RETRY_MAX_SECONDS", 0.05),
    ):
        yield fake
        fake.down = False
        _retrier_finished()
    recompute._owed.clear()


@pytest.fixture
def apply_async():
    with mock.patch.object(quality_recompute_task, "apply_async") as sent:
        yield sent


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _retrier_finished() -> bool:
    return _wait_for(lambda: recompute._retrier is None and not recompute._owed)


@pytest.mark.django_db
def test_recompute_owed_during_an_outage_is_queued_when_redis_returns(
    project, flaky_cache, apply_async, django_capture_on_commit_callbacks, caplog
):
    with (
        caplog.at_level(logging.ERROR, logger="quality.services.recompute"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        quality_recompute_schedule(project_id=project.pk)  # the submission's on_commit

    assert "Could not schedule a quality recompute" in caplog.text
    time.sleep(0.2)  # several retries while Redis is still down: nothing sent, still owed
    apply_async.assert_not_called()
    assert project.pk in recompute._owed

    flaky_cache.down = False  # Redis is back; nobody submits any more
    assert _wait_for(lambda: apply_async.called)
    apply_async.assert_called_once_with(args=(project.pk,), countdown=RECOMPUTE_DELAY_SECONDS)
    assert recompute._pending_key(project.pk) in flaky_cache.keys  # debounced as usual
    assert _retrier_finished()  # the retrier stops once nothing is owed


def test_each_owed_project_is_queued_once_by_one_retrier(flaky_cache, apply_async):
    for project_id in (11, 12, 11, 11):
        recompute._recompute_enqueue(project_id)
    retrier = recompute._retrier
    assert retrier is not None
    assert sorted(recompute._owed) == [11, 12]

    flaky_cache.down = False
    assert _wait_for(lambda: apply_async.call_count >= 2)
    assert _retrier_finished()
    assert sorted(c.kwargs["args"] for c in apply_async.call_args_list) == [(11,), (12,)]
    assert not retrier.is_alive()


def test_a_recompute_already_pending_elsewhere_settles_the_debt(flaky_cache, apply_async):
    recompute._recompute_enqueue(21)
    flaky_cache.keys.add(recompute._pending_key(21))  # another process queued it meanwhile
    flaky_cache.down = False

    assert _retrier_finished()
    apply_async.assert_not_called()


def test_broker_refusing_after_the_cache_accepted_is_owed_too(flaky_cache, apply_async):
    flaky_cache.down = False
    apply_async.side_effect = [OSError("broker unreachable"), None]

    recompute._recompute_enqueue(31)

    assert _wait_for(lambda: apply_async.call_count == 2)
    assert _retrier_finished()
    assert recompute._pending_key(31) in flaky_cache.keys


def test_owed_recomputes_are_given_up_after_the_bound(flaky_cache, apply_async, caplog):
    with (
        mock.patch.object(recompute, "RECOMPUTE_RETRY_GIVE_UP_SECONDS", 0.0),
        caplog.at_level(logging.ERROR, logger="quality.services.recompute"),
    ):
        recompute._recompute_enqueue(41)
        assert _retrier_finished()  # still down, but no longer owed: beat's sweep takes over

    apply_async.assert_not_called()
    assert "Gave up queueing a quality recompute for project 41" in caplog.text


def test_a_healthy_enqueue_owes_nothing(flaky_cache, apply_async):
    flaky_cache.down = False

    recompute._recompute_enqueue(51)
    recompute._recompute_enqueue(51)  # same debounce window

    apply_async.assert_called_once_with(args=(51,), countdown=RECOMPUTE_DELAY_SECONDS)
    assert recompute._retrier is None
    assert not recompute._owed


def test_a_later_successful_schedule_settles_the_debt(flaky_cache, apply_async):
    recompute._recompute_enqueue(61)
    assert 61 in recompute._owed
    flaky_cache.down = False

    recompute._recompute_enqueue(61)  # the next submission got through

    assert 61 not in recompute._owed
    assert _retrier_finished()
    apply_async.assert_called_once_with(args=(61,), countdown=RECOMPUTE_DELAY_SECONDS)
