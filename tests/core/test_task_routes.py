"""Each Celery task goes to its workload's queue, whether sent as a task object (its queue=
option) or by name (send_task, `celery call`, beat for a module it has not imported), so
workers split by `-Q exports` and `-Q quality,default` each get only their own work."""

from __future__ import annotations

from unittest import mock

import pytest

from config.celery_app import Queue, app

# Every task of the project and its queue; a new task must be added here.
EXPECTED = {
    "annotation.tasks.import_run_task": ((1,), Queue.DEFAULT),
    "crowd.tasks.assignment_expire_stale_task": ((), Queue.DEFAULT),
    "quality.releases.webhooks.release_webhook_task": ((1,), Queue.DEFAULT),
    "quality.tasks.quality_recompute_task": ((1,), Queue.QUALITY),
    "quality.tasks.quality_recompute_all_task": ((), Queue.QUALITY),
    "quality.model.tasks.model_train_task": ((1,), Queue.QUALITY),
    "quality.rules.tasks.rules_run_task": ((1,), Queue.QUALITY),
    "quality.release_tasks.release_build_task": ((1,), Queue.EXPORTS),
}


def _sent_to(send) -> str:
    with mock.patch.object(app.amqp, "send_task_message") as message:
        send()
    queue = message.call_args.kwargs["queue"]
    return getattr(queue, "name", queue)


def test_every_project_task_has_an_expected_queue():
    app.loader.import_default_modules()  # what a worker does at start: autodiscover tasks

    ours = {
        name for name in app.tasks if not name.startswith(("celery.", "tests.")) and "." in name
    }

    assert ours == set(EXPECTED)


@pytest.mark.parametrize(("name", "arguments", "queue"), [(n, *v) for n, v in EXPECTED.items()])
def test_task_object_is_routed_to_its_queue(name, arguments, queue):
    app.loader.import_default_modules()
    task = app.tasks[name]

    assert _sent_to(lambda: task.apply_async(args=arguments)) == queue


@pytest.mark.parametrize(("name", "arguments", "queue"), [(n, *v) for n, v in EXPECTED.items()])
def test_task_sent_by_name_is_routed_to_its_queue(name, arguments, queue):
    app.loader.import_default_modules()
    registry = app.tasks
    task = registry.pop(name)  # a sender that never imported the task's module
    try:
        assert _sent_to(lambda: app.send_task(name, args=arguments)) == queue
    finally:
        registry[name] = task


def test_worker_start_script_consumes_every_queue():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "platform" / "start-worker.sh").read_text()

    assert f"{Queue.DEFAULT},{Queue.QUALITY},{Queue.EXPORTS}" in script
