"""Release files are staged outside the row lock and moved into place atomically (issue 8).

A worker SIGKILLed mid-publish is simulated by raising a BaseException from a patched step: like
a real kill it is not caught by the build's error handling (the release stays `building`, no
clean-up runs) and the open transaction is rolled back. Each case then checks that the release
is not ready, downloads answer 409 not_ready, the next build completes with files matching their
checksums, and no half-written file or staging directory is left.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.db import DatabaseError, connections, transaction
from django.urls import reverse

from quality.models import Release, ReleaseFile
from quality.releases import release_build, storage_publish
from quality.releases.storage_publish import STAGING_DIR, release_storage_dir
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


class SimulatedKill(BaseException):
    """What SIGKILL looks like to the code under test: nothing catches it."""


@pytest.fixture(params=["filesystem", "object"])
def storage_kind(request, settings, media_root):
    """The default storage: local files (staged, then renamed) or an object store without
    rename or local paths (Django's InMemoryStorage stands in for S3: files written in place)."""
    if request.param == "object":
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
        }
    return request.param


@pytest.fixture
def pending(project, owner):
    annotators = [UserFactory(username=f"ann{i}") for i in range(3)]
    for n in range(30):
        item = ItemFactory(project=project, data={"text": f"review number {n}"})
        for i, author in enumerate(annotators):
            label = "positive" if (n + i) % 3 else "negative"
            AnnotationFactory(item=item, author=author, value={"label": label})
    return make_release(project, owner, include_raw=True)


def _calls(original, *, on_call, action):
    """A stand-in for `original` that runs `action(*args)` instead on call number `on_call`."""
    count = {"n": 0}

    def step(*args, **kwargs):
        count["n"] += 1
        if count["n"] == on_call:
            return action(*args, **kwargs)
        return original(*args, **kwargs)

    return step


def _kill(*_args, **_kwargs):
    raise SimulatedKill


def _half_copy_then_kill(source, target, entry):
    target.parent.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    raise SimulatedKill


KILLS = {  # step -> (function patched in storage_publish, call that is killed, what it does)
    "mid-staging": ("_stage_one", 2, _half_copy_then_kill),
    "after-staging": ("_mark_ready", 1, _kill),
    "mid-move": ("_move_one", 3, _kill),
    "mid-write": ("_write_final", 3, _kill),
    "after-writes": ("_mark_ready", 1, _kill),
}
STEPS = {
    "filesystem": ["mid-staging", "after-staging", "mid-move"],
    "object": ["mid-write", "after-writes"],
}


def _local_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _staging_dirs(release) -> list[Path]:
    root = Path(default_storage.path(f"releases/{release.project_id}/{STAGING_DIR}"))
    return [p for p in root.iterdir() if p.name.startswith(f"v{release.version}-")]


def _assert_downloads_refused(client, client_for, owner, release):
    client.force_login(owner)
    page = client.get(reverse("releases:release-download", args=[release.pk, "jsonl"]))
    api = client_for(owner).get(
        reverse("api:release-download", args=[release.pk]) + "?format=jsonl"
    )

    assert page.status_code == 409
    assert "not ready" in page.content.decode()
    assert api.status_code == 409
    assert api.json()["code"] == "not_ready"


def _assert_published_intact(client, owner, release):
    """Ready; every recorded file matches its record and the manifest; nothing else stored."""
    assert release.status == Release.Status.READY
    listed = {entry["format"]: entry for entry in release.manifest["files"]}
    records = list(release.files.all())
    assert {r.format for r in records} == {*listed, "manifest"}
    for record in records:
        with default_storage.open(record.path, "rb") as handle:
            content = handle.read()
        assert hashlib.sha256(content).hexdigest() == record.sha256
        assert len(content) == record.size
        if record.format == "manifest":
            assert json.loads(content) == release.manifest
        else:
            assert (record.sha256, record.size) == (
                listed[record.format]["sha256"],
                listed[record.format]["size"],
            )
    client.force_login(owner)
    response = client.get(reverse("releases:release-download", args=[release.pk, "jsonl"]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == listed["jsonl"]["sha256"]


@pytest.mark.parametrize(
    ("storage_kind", "step"),
    [(kind, step) for kind, steps in STEPS.items() for step in steps],
    indirect=["storage_kind"],
)
def test_release_killed_while_publishing_is_not_ready_and_the_next_build_completes(
    storage_kind, step, client, client_for, owner, pending
):
    name, on_call, action = KILLS[step]
    original = getattr(storage_publish, name)
    with (
        mock.patch.object(storage_publish, name, _calls(original, on_call=on_call, action=action)),
        pytest.raises(SimulatedKill),
    ):
        release_build(release=pending)

    killed = Release.objects.get(pk=pending.pk)
    assert killed.status == Release.Status.BUILDING
    assert not ReleaseFile.objects.filter(release=killed).exists()
    _assert_downloads_refused(client, client_for, owner, killed)
    if storage_kind == "filesystem":
        final = _local_files(Path(default_storage.path(release_storage_dir(release=killed))))
        staged = [_local_files(d) for d in _staging_dirs(killed)]
        assert len(staged) == 1  # the killed build's staging directory is left behind
        expected_final = {"mid-staging": 0, "after-staging": 0, "mid-move": 2}[step]
        assert len(final) == expected_final  # only whole files, moved atomically

    rebuilt = release_build(release=killed)

    _assert_published_intact(client, owner, rebuilt)
    if storage_kind == "filesystem":
        final = _local_files(Path(default_storage.path(release_storage_dir(release=rebuilt))))
        assert final == {Path(default_storage.path(r.path)) for r in rebuilt.files.all()}
        assert _staging_dirs(rebuilt) == []  # the killed build's staging removed


def test_release_build_failing_mid_move_discards_its_staging_and_retries_cleanly(
    client, owner, pending
):
    original = storage_publish._move_one

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    with mock.patch.object(
        storage_publish, "_move_one", _calls(original, on_call=2, action=disk_full)
    ):
        failed = release_build(release=pending)

    assert failed.status == Release.Status.FAILED
    assert "No space left on device" in failed.error
    assert _staging_dirs(failed) == []
    rebuilt = release_build(release=failed)
    _assert_published_intact(client, owner, rebuilt)


def test_release_build_of_a_ready_release_sweeps_staging_left_by_a_killed_loser(
    client, owner, pending
):
    ready = release_build(release=pending)
    leftover = Path(
        default_storage.path(storage_publish.release_staging_dir(release=ready, token="dead"))
    )
    (leftover / "data.jsonl").parent.mkdir(parents=True)
    (leftover / "data.jsonl").write_bytes(b'{"half": ')
    other = Path(default_storage.path(f"releases/{ready.project_id}/{STAGING_DIR}/v99-live"))
    other.mkdir(parents=True)

    again = release_build(release=ready)

    assert again.built_at == ready.built_at
    assert not leftover.exists()
    assert other.exists()  # another release's build is left alone
    _assert_published_intact(client, owner, again)


def test_release_concurrent_loser_removes_its_staging_and_changes_nothing(client, owner, pending):
    # The loser stages, then finds the release ready under the lock (the winner committed
    # in between): its staged files are removed, the winner's files and rows stay.
    winner = {}

    def win_first(*, release, staged, manifest):
        winner["release"] = release_build(release=Release.objects.get(pk=release.pk))
        return original(release=release, staged=staged, manifest=manifest)

    original = storage_publish._mark_ready
    with mock.patch.object(storage_publish, "_mark_ready", win_first):
        release_build(release=pending)

    won = winner["release"]
    after = Release.objects.get(pk=pending.pk)
    assert after.built_at == won.built_at
    assert list(after.files.values_list("id", "sha256")) == list(
        won.files.values_list("id", "sha256")
    )
    assert _staging_dirs(after) == []
    _assert_published_intact(client, owner, after)


# --- the row lock is not held while files are copied ---------------------------------------------


def _row_lock_free(release_id: int) -> bool:
    """Whether another connection can lock the release row right now (FOR UPDATE NOWAIT)."""
    result = {}

    def probe():
        try:
            with transaction.atomic():
                Release.objects.select_for_update(nowait=True).get(pk=release_id)
            result["free"] = True
        except DatabaseError:
            result["free"] = False
        finally:
            connections.close_all()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return result["free"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("storage_kind", "copy_step"),
    [("filesystem", "_stage_one"), ("object", "_write_final")],
    indirect=["storage_kind"],
)
def test_release_row_is_not_locked_while_files_are_copied(
    storage_kind, copy_step, client, owner, pending
):
    seen = {"copy": [], "move": []}
    copy, move = getattr(storage_publish, copy_step), storage_publish.staged_files_move

    def slow_copy(*args, **kwargs):
        seen["copy"].append(_row_lock_free(pending.pk))
        return copy(*args, **kwargs)

    def probed_move(staged):
        seen["move"].append(_row_lock_free(pending.pk))
        return move(staged)

    with (
        mock.patch.object(storage_publish, copy_step, slow_copy),
        mock.patch.object(storage_publish, "staged_files_move", probed_move),
    ):
        built = release_build(release=pending)

    assert built.status == Release.Status.READY
    assert len(seen["copy"]) == built.files.count()
    assert all(seen["copy"])  # every copy ran with the row free
    assert seen["move"] == [False]  # the probe does see the lock: the moves run under it
    _assert_published_intact(client, owner, built)
