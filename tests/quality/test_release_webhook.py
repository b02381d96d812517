"""Release webhooks: owners' settings (service, API, page), the signed POST to a real local HTTP
server, retries with back-off on a failing server, idempotency and the SSRF guard."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.urls import reverse

from core.exceptions import ApplicationError
from quality.models import ReleaseWebhook, WebhookDelivery
from quality.releases import release_build
from quality.releases import webhooks as hooks
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]
SECRET = "s3cret-for-the-tests-0123"


class Receiver:
    """A real HTTP server in a thread: answers the queued status codes (then 200) and keeps
    every request's headers and body."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                time.sleep(delay)
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/assay"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_like_a_worker(release_id: int) -> list[int]:
    """Run the task as a worker would, each retry as a new run with the retry count, without
    waiting; returns the countdowns it asked for."""
    countdowns: list[int] = []

    def retry(*args, countdown, **kwargs):
        countdowns.append(countdown)
        raise Retry(when=countdown)

    retries = 0
    with mock.patch.object(hooks.release_webhook_task, "retry", retry):
        while True:
            result = hooks.release_webhook_task.apply(
                args=[release_id], retries=retries, throw=False
            )
            if result.state != "RETRY":
                assert result.state == "SUCCESS", result.result
                return countdowns
            retries += 1


@pytest.fixture
def allow_private(settings):
    settings.ASSAY_WEBHOOK_ALLOW_PRIVATE = True
    settings.ASSAY_PUBLIC_URL = "https://assay.example.org"


@pytest.fixture
def ready(project, owner):
    annotators = [UserFactory(username=f"ann{i}") for i in range(2)]
    for n in range(3):
        item = ItemFactory(project=project, data={"text": f"text {n}"})
        for author in annotators:
            AnnotationFactory(item=item, author=author, value={"label": "positive"})
    return release_build(release=make_release(project, owner))


def set_hook(project, owner, url, **kwargs):
    return hooks.release_webhook_set(project=project, user=owner, url=url, secret=SECRET, **kwargs)


# --- delivery ------------------------------------------------------------------------------------


def test_delivery_posts_a_signed_event(project, owner, ready, allow_private):
    with Receiver() as receiver:
        set_hook(project, owner, receiver.url)
        hooks.release_webhook_task.apply(args=[ready.pk], throw=False)

    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Assay-Signature"] == expected
    assert headers["X-Assay-Event"] == "release.ready"
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    files = {record.format: record for record in ready.files.all()}
    assert event["event"] == "release.ready"
    assert event["project"] == project.pk
    release = event["release"]
    assert (release["id"], release["version"], release["tag"]) == (ready.pk, 1, "v1")
    assert release["manifest_sha256"] == files["manifest"].sha256
    assert release["url"] == f"https://assay.example.org/api/v1/releases/{ready.pk}/"
    assert {f["format"] for f in release["files"]} == set(files) - {"manifest"}
    jsonl = next(f for f in release["files"] if f["format"] == "jsonl")
    assert jsonl["sha256"] == files["jsonl"].sha256
    assert jsonl["size"] == files["jsonl"].size
    assert jsonl["url"].endswith(f"/api/v1/releases/{ready.pk}/download/?format=jsonl")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempt, delivery.status_code, delivery.delivered) == (1, 200, True)


def test_a_delivered_event_is_not_sent_again(project, owner, ready, allow_private):
    with Receiver() as receiver:
        set_hook(project, owner, receiver.url)
        hooks.release_webhook_task.apply(args=[ready.pk], throw=False)
        hooks.release_webhook_task.apply(args=[ready.pk], throw=False)
        assert hooks.release_webhook_deliver(release_id=ready.pk) is None

    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_deliver_once(project, owner, ready, allow_private):
    barrier = threading.Barrier(3)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(hooks.release_webhook_deliver(release_id=ready.pk))
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    with Receiver(delay=0.3) as receiver:
        set_hook(project, owner, receiver.url)
        threads = [threading.Thread(target=run) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert errors == []
    assert len(receiver.requests) == 1
    assert sorted(r is None for r in results) == [False, True, True]
    assert WebhookDelivery.objects.filter(delivered=True).count() == 1


def test_failures_are_retried_with_back_off_until_a_2xx(project, owner, ready, allow_private):
    with Receiver([500, 503]) as receiver:
        set_hook(project, owner, receiver.url)
        countdowns = run_like_a_worker(ready.pk)

    assert len(receiver.requests) == 3
    assert countdowns == [10, 60]
    attempts = list(
        WebhookDelivery.objects.order_by("id").values_list("attempt", "status_code", "delivered")
    )
    assert attempts == [(1, 500, False), (2, 503, False), (3, 200, True)]
    assert "HTTP 500" in WebhookDelivery.objects.get(attempt=1).error


def test_a_failing_server_gets_at_most_six_attempts(project, owner, ready, allow_private):
    with Receiver([500] * 10) as receiver:
        set_hook(project, owner, receiver.url)
        countdowns = run_like_a_worker(ready.pk)

    assert len(receiver.requests) == hooks.MAX_ATTEMPTS == 6
    assert countdowns == [10, 60, 300, 1800, 7200]
    assert WebhookDelivery.objects.count() == 6
    assert not WebhookDelivery.objects.filter(delivered=True).exists()
    assert [hooks.retry_countdown(n) for n in range(5)] == [10, 60, 300, 1800, 7200]


def test_an_unreachable_host_is_recorded_as_an_error(project, owner, ready, allow_private):
    receiver = Receiver()  # bound but never serving: the port refuses once closed
    url = receiver.url
    receiver.server.server_close()
    set_hook(project, owner, url)

    delivery = hooks.release_webhook_deliver(release_id=ready.pk)

    assert delivery.delivered is False
    assert delivery.status_code is None
    assert "Connection refused" in delivery.error or "URLError" in delivery.error


def test_redirects_are_not_followed(project, owner, ready, allow_private):
    with Receiver([302]) as receiver:
        set_hook(project, owner, receiver.url)
        delivery = hooks.release_webhook_deliver(release_id=ready.pk)

    assert (delivery.status_code, delivery.delivered) == (302, False)


def test_nothing_is_sent_without_an_active_webhook_or_before_ready(
    project, owner, ready, allow_private
):
    assert hooks.release_webhook_deliver(release_id=ready.pk) is None
    with Receiver() as receiver:
        set_hook(project, owner, receiver.url, active=False)
        assert hooks.release_webhook_deliver(release_id=ready.pk) is None
        set_hook(project, owner, receiver.url)
        pending = make_release(project, owner)
        assert hooks.release_webhook_deliver(release_id=pending.pk) is None
    assert receiver.requests == []


def test_announce_enqueues_on_commit_only_with_a_webhook(
    project, owner, ready, allow_private, django_capture_on_commit_callbacks
):
    with mock.patch.object(hooks.release_webhook_task, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            hooks.release_ready_announce(ready.pk)
        delay.assert_not_called()
        set_hook(project, owner, "http://127.0.0.1:9/")
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            hooks.release_ready_announce(ready.pk)
            delay.assert_not_called()  # not before commit
    assert len(callbacks) == 1
    delay.assert_called_once_with(ready.pk)


# --- settings, SSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_addresses_are_refused_in_production(project, owner, settings, url):
    settings.ASSAY_WEBHOOK_ALLOW_PRIVATE = False

    with pytest.raises(hooks.WebhookUrlError) as caught:
        set_hook(project, owner, url)

    assert "url" in caught.value.fields
    assert not ReleaseWebhook.objects.exists()


def test_public_addresses_pass_the_guard(settings):
    settings.ASSAY_WEBHOOK_ALLOW_PRIVATE = False
    with mock.patch.object(
        hooks.socket, "getaddrinfo", return_value=[(2, 1, 6, "", ("93.184.215.14", 443))]
    ):
        hooks.webhook_url_check("https://hooks.example.com/assay")


def test_guard_runs_again_before_each_attempt(project, owner, ready, settings, allow_private):
    with Receiver() as receiver:
        set_hook(project, owner, receiver.url)
        settings.ASSAY_WEBHOOK_ALLOW_PRIVATE = False
        delivery = hooks.release_webhook_deliver(release_id=ready.pk)

    assert receiver.requests == []
    assert delivery.delivered is False
    assert "private or reserved" in delivery.error


@pytest.mark.parametrize(
    ("url", "secret", "field"),
    [
        ("ftp://example.com/x", SECRET, "url"),
        ("not a url", SECRET, "url"),
        ("https://user:pw@example.com/x", SECRET, "url"),
        ("https://example.com/x", "short", "secret"),
        ("https://example.com/x", "", "secret"),
    ],
)
def test_bad_settings_name_the_field(project, owner, allow_private, url, secret, field):
    with pytest.raises(ApplicationError) as caught:
        hooks.release_webhook_set(project=project, user=owner, url=url, secret=secret)

    assert field in caught.value.fields


def test_blank_secret_keeps_the_current_one_and_reviewers_are_refused(
    project, owner, reviewer, allow_private
):
    set_hook(project, owner, "https://example.com/a")
    hooks.release_webhook_set(project=project, user=owner, url="https://example.com/b", secret="")

    webhook = ReleaseWebhook.objects.get()
    assert (webhook.url, webhook.secret) == ("https://example.com/b", SECRET)
    with pytest.raises(PermissionDenied):
        hooks.release_webhook_set(
            project=project, user=reviewer, url="https://e.com/", secret=SECRET
        )


# --- API and page --------------------------------------------------------------------------------


def test_api_get_put_delete(client_for, project, owner, ready, allow_private):
    api = client_for(owner)
    url = reverse("api:release-webhook", args=[project.pk])

    assert api.get(url).json() == {
        "url": "",
        "active": False,
        "secret_set": False,
        "deliveries": [],
    }
    bad = api.put(url, {"url": "https://example.com/h", "secret": "x"}, format="json")
    assert bad.status_code == 400
    with Receiver([500]) as receiver:
        saved = api.put(url, {"url": receiver.url, "secret": SECRET}, format="json")
        hooks.release_webhook_deliver(release_id=ready.pk)
    assert saved.status_code == 200
    body = api.get(url).json()
    assert body["url"] == receiver.url
    assert body["secret_set"] is True
    assert "secret" not in body
    assert [
        (d["tag"], d["attempt"], d["status_code"], d["delivered"]) for d in body["deliveries"]
    ] == [("v1", 1, 500, False)]
    assert api.delete(url).status_code == 204
    assert not ReleaseWebhook.objects.exists()


def test_api_is_for_owners_only(client_for, project, reviewer, outsider):
    url = reverse("api:release-webhook", args=[project.pk])

    assert client_for(reviewer).get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(None).get(url).status_code in (401, 403)


def test_page_saves_and_lists_deliveries(client, project, owner, ready, allow_private):
    client.force_login(owner)
    url = reverse("releases:release-webhook", args=[project.pk])

    invalid = client.post(url, {"url": "ftp://x", "secret": SECRET, "active": "on"})
    assert invalid.status_code == 422
    assert b"http:// or https://" in invalid.content
    with Receiver() as receiver:
        saved = client.post(url, {"url": receiver.url, "secret": SECRET, "active": "on"})
        hooks.release_webhook_deliver(release_id=ready.pk)
    assert saved.status_code == 302
    page = client.get(url).content.decode()
    assert receiver.url in page
    assert "Delivered · 200" in page
    assert SECRET not in page
    removed = client.post(url, {"action": "delete"})
    assert removed.status_code == 302
    assert not ReleaseWebhook.objects.exists()


def test_page_is_for_owners_only(client, project, reviewer):
    client.force_login(reviewer)

    assert client.get(reverse("releases:release-webhook", args=[project.pk])).status_code == 403
