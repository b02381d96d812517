from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.urls import reverse

from annotation.models import ProjectMember
from annotation.services import project_update
from crowd.api.serializers import WorkItemSerializer
from crowd.models import Assignment, Pool
from crowd.privacy import Masking, data_mask, luhn_valid, text_mask, url_is_personal
from crowd.selectors import masking_for_worker, worker_is_external
from tests.annotation.factories import ItemFactory, UserFactory
from tests.crowd.factories import join_pool, make_pool

pytestmark = pytest.mark.django_db

# Realistic support-ticket text with one of each kind of personal data.
ORIGINALS = {
    "email": "jane.doe@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "ipv4": "192.168.10.42",
    "ipv6": "2001:db8::8a2e:370:7334",
    "url": "https://shop.example.com/users/jdoe42",
    "name": "Margaret Okafor",
    "signature": "Tomasz Wiśniewski",
}
TICKET = (
    f"Hi, my name is {ORIGINALS['name']} and my order never arrived. Reach me at "
    f"{ORIGINALS['email']} or {ORIGINALS['phone']}. I paid with {ORIGINALS['card']} from "
    f"{ORIGINALS['ipv4']} (and {ORIGINALS['ipv6']} at work); my account is "
    f"{ORIGINALS['url']}. Version 2.4.1 of the app, order placed 2024-03-15, total $1 299.\n\n"
    f"Best regards,\n{ORIGINALS['signature']}"
)


# --- the detector ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to jane.doe+news@mail.example.co.uk today", "Write to [EMAIL] today"),
        ("Call +1 (555) 123-4567 now", "Call [PHONE] now"),
        ("Call (555) 123-4567 or 555.123.4567", "Call [PHONE] or [PHONE]"),
        ("Mobile 0612345678.", "Mobile [PHONE]."),
        ("Tel: 0044 20 7946 0958", "Tel: [PHONE]"),
        ("Card 4111-1111-1111-1111 exp 12/27", "Card [CARD] exp 12/27"),
        ("Amex 3782 822463 10005", "Amex [CARD]"),
        ("Card 4111 1111 1111 1111 12/27", "Card [CARD] 12/27"),
        ("Plain 5500005555555559 here", "Plain [CARD] here"),
        ("From 10.0.0.1, then 8.8.8.8.", "From [IP], then [IP]."),
        ("v6 fe80::1ff:fe23:4567:890a and ::1", "v6 [IP] and [IP]"),
        ("See https://example.com/u/jdoe.", "See [URL]."),
        ("See http://uni.example.edu/~jsmith/cv", "See [URL]"),
        ("See https://example.com/profile/123/edit", "See [URL]"),
        ("See https://x.io/p?email=a%40b.co&x=1", "See [URL]"),
        ("See https://x.io/track?uid=991", "See [URL]"),
        ("Dear Dr. Amelia Hart, thanks", "Dear Dr. [NAME], thanks"),
        ("Ask Mrs O'Brien", "Ask Mrs [NAME]"),
        ("Hello, My name is Jean-Luc Picard.", "Hello, My name is [NAME]."),
        ("Hi, this is Ana Silva speaking.", "Hi, this is [NAME] speaking."),
        ("Thanks, Bob", "Thanks, [NAME]"),
        ("Ok.\nKind regards,\nPriya Raman\n", "Ok.\nKind regards,\n[NAME]\n"),
        ("Ok.\n-- \nLena Fischer", "Ok.\n-- \n[NAME]"),
    ],
)
def test_text_mask_replaces_each_kind_of_personal_data(text, expected):
    assert text_mask(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Released on 2024-03-15, again 15.03.2024 and 03/15/2024.",
        "Upgrade from 1.2.3 to v2.10.3.4 or build 10.0.19041.1234.",
        "It cost $1 299 999, or 1 299 999 EUR, or 1,299.99, or €2 450 000.",
        "We sold 1 234 567 units.",
        "Not a card: 4111 1111 1111 1112 nor 1234567812345678.",
        "A time 12:30:45 is not an address, nor is std::vector.",
        "Docs at https://example.com/docs/v1/intro?page=2 are public.",
        "New York is lovely and the United Nations met there.",
        "Thanks for the help, it works.",
        "Order 12345 arrived.",
    ],
)
def test_text_mask_leaves_look_alikes_alone(text):
    assert text_mask(text) == text


def test_text_mask_is_deterministic():
    assert text_mask(TICKET) == text_mask(TICKET)
    assert text_mask(text_mask(TICKET)) == text_mask(TICKET)


def test_text_mask_of_the_ticket_keeps_no_original():
    masked = text_mask(TICKET)

    for original in ORIGINALS.values():
        assert original not in masked
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[IP]", "[URL]", "[NAME]"):
        assert placeholder in masked
    assert "2.4.1" in masked
    assert "2024-03-15" in masked
    assert "$1 299" in masked


def test_luhn_valid_accepts_cards_and_rejects_near_misses():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("")


def test_url_is_personal_reads_path_and_query():
    assert url_is_personal("https://example.com/people/ann")
    assert url_is_personal("www.example.com/@ann")
    assert url_is_personal("https://example.com/x?first_name=Ann")
    assert not url_is_personal("https://example.com/blog/2024/usage?page=3")


def test_data_mask_walks_nested_values_and_is_strict_in_sensitive_fields():
    data = {
        "text": "Sarah Connor called from 10.1.2.3",
        "author": "Sarah Connor, customer 88412345",
        "meta": {"emails": ["a.b@example.com"], "card": 4111111111111111, "stars": 5},
        "ok": True,
    }

    masked = data_mask(data, sensitive_fields={"author"})

    assert masked == {
        "text": "Sarah Connor called from [IP]",  # no cue: ordinary fields keep plain names
        "author": "[NAME], customer [NUMBER]",
        "meta": {"emails": ["[EMAIL]"], "card": "[CARD]", "stars": 5},
        "ok": True,
    }
    assert data["author"] == "Sarah Connor, customer 88412345"  # a copy; the input is untouched


# --- who is external ---------------------------------------------------------------------------


@pytest.fixture
def external_pool(project):
    pool = make_pool(project, name="Prolific")
    pool.kind = Pool.Kind.EXTERNAL_CROWD
    pool.save(update_fields=["kind"])
    return pool


@pytest.fixture
def external_worker(project, external_pool):
    user = UserFactory(username="prolific-5f1a")
    ProjectMember.objects.create(project=project, user=user, role=ProjectMember.Role.ANNOTATOR)
    join_pool(external_pool, user)
    return user


@pytest.fixture
def ticket(project):
    project_update(project=project, sensitive_fields=["customer"])
    return ItemFactory(project=project, data={"text": TICKET, "customer": "Margaret Okafor"})


def test_worker_is_external_in_one_query(
    project, worker, external_worker, owner, django_assert_num_queries
):
    with django_assert_num_queries(1):
        assert worker_is_external(worker=external_worker, project=project)

    assert not worker_is_external(worker=worker, project=project)
    assert not worker_is_external(worker=owner, project=project)


def test_an_external_pool_of_another_project_does_not_count(project, worker, external_pool):
    other = ItemFactory().project
    other_pool = make_pool(other, name="MTurk")
    other_pool.kind = Pool.Kind.EXTERNAL_CROWD
    other_pool.save(update_fields=["kind"])
    join_pool(other_pool, worker)

    assert not worker_is_external(worker=worker, project=project)
    assert masking_for_worker(worker=worker, project=project) is None


def test_masking_for_carries_the_projects_sensitive_fields(project, external_worker):
    project_update(project=project, sensitive_fields=["customer", "notes"])

    masking = masking_for_worker(worker=external_worker, project=project)

    assert masking == Masking(sensitive_fields=frozenset({"customer", "notes"}))


def test_work_item_serializer_refuses_to_run_without_a_masking_decision(item):
    with pytest.raises(ImproperlyConfigured):
        WorkItemSerializer(item).data  # noqa: B018


# --- the API -----------------------------------------------------------------------------------


def assert_masked(body: bytes) -> None:
    text = body.decode()
    for original in ORIGINALS.values():
        assert original not in text, original
        assert original.encode("unicode_escape").decode() not in text, original
    assert "jane.doe" not in text
    assert "Okafor" not in text
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[IP]", "[URL]", "[NAME]"):
        assert placeholder in text


def assert_original(body: bytes) -> None:
    text = body.decode()
    for original in ORIGINALS.values():
        assert original in text, original
    assert "[EMAIL]" not in text


def test_next_api_masks_the_item_for_an_external_worker(
    project, ticket, external_worker, client_for
):
    response = client_for(external_worker).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 200
    assert_masked(response.content)
    data = response.json()["item"]["data"]
    assert data["customer"] == "[NAME]"
    assert data["text"] == text_mask(TICKET)
    ticket.refresh_from_db()
    assert ticket.data["text"] == TICKET  # the stored item is never changed


def test_next_api_sends_the_original_to_an_internal_worker(project, ticket, worker, client_for):
    response = client_for(worker).post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 200
    assert response.json()["item"]["data"] == {"text": TICKET, "customer": "Margaret Okafor"}
    assert_original(response.content)


@pytest.mark.parametrize("action", ["submit", "skip"])
def test_the_next_item_in_submit_and_skip_is_masked_too(
    project, external_worker, client_for, action
):
    plain = ItemFactory(project=project, data={"text": "Nothing personal, only a review."})
    ticket = ItemFactory(project=project, data={"text": TICKET})
    client = client_for(external_worker)
    first = client.post(f"/api/v1/projects/{project.pk}/next/").json()
    assert first["item"]["id"] == plain.pk  # claims go in id order among equal items

    response = client.post(
        f"/api/v1/assignments/{first['assignment']}/{action}/?next=1",
        {"label": "negative"},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["next"]["item"]["id"] == ticket.pk
    assert_masked(response.content)


# --- the labeling page -------------------------------------------------------------------------


def test_label_page_masks_current_and_buffered_items_for_an_external_worker(
    client, project, ticket, external_worker
):
    ItemFactory(project=project, data={"text": f"Second ticket from {ORIGINALS['email']}"})
    client.force_login(external_worker)

    response = client.get(reverse("crowd:label", args=[project.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("label-item-text") == 2  # the current item and the buffered next one
    for original in ORIGINALS.values():
        assert original not in html
    assert "jane.doe" not in html
    assert "Okafor" not in html
    for placeholder in ("[EMAIL]", "[CARD]", "[NAME]"):
        assert placeholder in html


def test_label_page_shows_the_original_to_an_internal_worker(client, project, ticket, worker):
    client.force_login(worker)

    response = client.get(reverse("crowd:label", args=[project.pk]))

    html = response.content.decode()
    assert ORIGINALS["email"] in html
    assert ORIGINALS["card"] in html
    assert "[EMAIL]" not in html


def test_label_refill_after_submit_is_masked(client, project, external_worker):
    for n in range(3):
        ItemFactory(project=project, data={"text": f"Mail {n}.person@example.net please"})
    client.force_login(external_worker)
    client.get(reverse("crowd:label", args=[project.pk]))
    held = list(Assignment.objects.filter(worker=external_worker).order_by("id"))

    response = client.post(
        reverse("crowd:label-submit", args=[project.pk, held[0].pk]),
        {"label": "positive", "duration_ms": 900, "held": str(held[1].pk)},
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "label-item-text" in html
    assert "2.person@example.net" not in html
    assert "[EMAIL]" in html


# --- owners set the sensitive fields -----------------------------------------------------------


def test_owner_sets_sensitive_fields_on_the_settings_page(client, project, owner):
    client.force_login(owner)
    url = reverse("annotation:project-settings", args=[project.pk])
    page = client.get(url)
    form = {
        "name": project.name,
        "instructions": project.instructions,
        "labels": "positive | 1\nnegative | 2",
        "overlap": 3,
        "gold_ratio": 0,
        "reservation_timeout_seconds": 600,
        "sensitive_fields": "customer, notes\nnotes",
    }

    response = client.post(url, form)

    assert 'name="sensitive_fields"' in page.content.decode()
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.sensitive_fields == ["customer", "notes"]
    assert "customer, notes" in client.get(url).content.decode()


def test_owner_sets_sensitive_fields_through_the_api(project, owner, worker, client_for):
    url = f"/api/v1/projects/{project.pk}/"

    response = client_for(owner).patch(url, {"sensitive_fields": ["customer"]}, format="json")
    denied = client_for(worker).patch(url, {"sensitive_fields": []}, format="json")

    assert response.status_code == 200
    assert response.json()["sensitive_fields"] == ["customer"]
    assert denied.status_code == 403
    project.refresh_from_db()
    assert project.sensitive_fields == ["customer"]


def test_sensitive_fields_must_be_a_list_of_names(project):
    with pytest.raises(ValidationError):
        project_update(project=project, sensitive_fields="customer")
    with pytest.raises(ValidationError):
        project_update(project=project, sensitive_fields=["a", "a"])
