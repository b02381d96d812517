"""Who may open what: every URL pattern of the project × every role, table-driven.

The URL patterns are walked from the root resolver, so a new endpoint without a row in EXPECTED
fails `test_every_url_has_a_row`. Each row says, per role, the status a request answers with:
a GET, or for endpoints that only take unsafe methods, a POST with an empty body (the expected
400 then means "allowed in, and the input is checked").

Roles: anonymous; outsider (logged in, no relation); worker of another project; internal
worker (annotator); external worker (annotator through an external-crowd pool); blocked worker
(annotator with an active block); reviewer; owner; staff (no role, sees every project).

The data (a project with items, gold, annotations, a release, a block, pools, an invite, a
study, a requirement, a quality action...) is built once for the module inside a transaction
rolled back at the end; each request runs in a savepoint rolled back after it.

Run with ASSAY_AUTHZ_DUMP=<file> to write the observed table there, in TABLE's layout
(handy when adding a row: copy the line, after checking the view agrees with it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from annotation.models import ImportJob, ProjectMember
from annotation.services import project_member_set
from crowd.models import (
    Assignment,
    ExternalStudy,
    Pool,
    PoolInvite,
    PoolMember,
    ProjectPool,
    ProjectRequirement,
)
from crowd.services import assignment_claim_next, worker_block
from quality.models import LabelingRule, QualityAction
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator
from tests.quality.factories import make_release, vote

ROLES = (
    "anonymous",
    "outsider",
    "other_worker",
    "annotator",
    "external",
    "blocked",
    "reviewer",
    "owner",
    "staff",
)
# Not part of the matrix: Django's admin, the API schema and docs, and the auth pages.
SKIPPED_NAMESPACES = ("admin",)
SKIPPED_NAMES = frozenset(
    {"login", "logout", "api:schema", "api:docs", "api:auth-token", "api:user-create"}
)

# Statuses: "login" is a 302 to the login page, "3xx" any other redirect, "2xx" success, else
# the exact code. For unsafe-only endpoints the request has an empty body, so an allowed role
# usually gets 400 (API) or 422 (HTML form errors) rather than 2xx.
LOGIN = "login"
OK = "2xx"
FOUND = "3xx"
METHODS = ("get", "post", "delete")

# fmt: off
TABLE = """
url name                          method anon  outs  other annot extern block revw  owner staff
annotation:import-create          post   login 404   404   403   403   403   403   422   422
annotation:import-detail          get    login 404   404   403   403   403   2xx   2xx   2xx
annotation:project-create         get    login 2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
annotation:project-detail         get    login 404   404   2xx   2xx   2xx   2xx   2xx   2xx
annotation:project-list           get    login 2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
annotation:project-settings       get    login 404   404   403   403   403   403   2xx   2xx
api:assignment-skip               post   401   404   404   2xx   404   404   404   404   404
api:assignment-submit             post   401   404   404   400   404   404   404   404   404
api:audit-event-list              get    401   404   404   403   403   403   403   2xx   2xx
api:import-create                 post   401   404   404   403   403   403   403   400   400
api:import-detail                 get    401   404   404   403   403   403   2xx   2xx   2xx
api:item-list                     get    401   404   404   403   403   403   2xx   2xx   2xx
api:label-import-create           post   401   404   404   403   403   403   403   400   400
api:label-import-labelstudio-create post   401   404   404   403   403   403   403   400   400
api:model-train                   post   401   404   404   403   403   403   403   400   400
api:model-version-list            get    401   404   404   403   403   403   2xx   2xx   2xx
api:pay-bonuses                   post   401   404   404   403   403   403   403   400   400
api:pay-decisions                 post   401   404   404   403   403   403   400   400   400
api:pay-ledger                    get    401   404   404   2xx   2xx   2xx   2xx   2xx   2xx
api:pay-payout                    get    401   404   404   403   403   403   403   400   400
api:pay-settings                  get    401   404   404   2xx   2xx   2xx   2xx   2xx   2xx
api:pool-invite-revoke            post   401   404   404   404   404   404   404   2xx   2xx
api:pool-invites                  post   401   404   404   404   404   404   404   400   400
api:pool-join                     post   401   2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
api:pool-list                     get    401   2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
api:pool-member-remove            delete 401   404   404   404   404   404   404   2xx   2xx
api:pool-members                  get    401   404   404   404   404   404   404   2xx   2xx
api:prediction-list               get    401   404   404   403   403   403   2xx   2xx   2xx
api:project-block-lift            post   401   404   404   403   403   403   403   2xx   2xx
api:project-blocks                get    401   404   404   403   403   403   403   2xx   2xx
api:project-detail                get    401   404   404   2xx   2xx   2xx   2xx   2xx   2xx
api:project-list                  get    401   2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
api:project-member-remove         delete 401   404   404   403   403   403   403   2xx   2xx
api:project-members               get    401   404   404   403   403   403   403   2xx   2xx
api:project-next                  post   401   404   404   2xx   2xx   403   403   403   403
api:project-pool-unlink           delete 401   404   404   403   403   403   403   2xx   2xx
api:project-pools                 get    401   404   404   403   403   403   403   2xx   2xx
api:project-qualification         get    401   404   404   403   403   403   403   404   404
api:project-qualification-attempts get    401   404   404   403   403   403   403   2xx   2xx
api:project-quality               get    401   404   404   403   403   403   2xx   2xx   2xx
api:project-quality-action-undo   post   401   404   404   403   403   403   403   2xx   2xx
api:project-quality-actions       get    401   404   404   403   403   403   403   2xx   2xx
api:project-quality-config        get    401   404   404   403   403   403   403   2xx   2xx
api:project-quality-gold-promote  post   401   404   404   403   403   403   403   400   400
api:project-requirement-remove    delete 401   404   404   403   403   403   403   2xx   2xx
api:project-requirements          get    401   404   404   403   403   403   403   2xx   2xx
api:project-studies               get    401   404   404   403   403   403   403   2xx   2xx
api:release-detail                get    401   404   404   403   403   403   2xx   2xx   2xx
api:release-diff                  get    401   404   404   403   403   403   400   400   400
api:release-download              get    401   404   404   403   403   403   400   400   400
api:release-list                  get    401   404   404   403   403   403   2xx   2xx   2xx
api:release-webhook               get    401   404   404   403   403   403   403   2xx   2xx
api:review-decision               post   401   404   404   403   403   403   400   400   400
api:review-item                   get    401   404   404   403   403   403   2xx   2xx   2xx
api:review-queue                  get    401   404   404   403   403   403   2xx   2xx   2xx
api:rule-detail                   get    401   404   404   403   403   403   2xx   2xx   2xx
api:rule-list                     get    401   404   404   403   403   403   2xx   2xx   2xx
api:rule-run                      post   401   404   404   403   403   403   403   2xx   2xx
api:schema-plan                   post   401   404   404   403   403   403   403   400   400
api:schema-version-list           get    401   404   404   403   403   403   2xx   2xx   2xx
audit:audit-list                  get    login 404   404   403   403   403   403   2xx   2xx
crowd:item-image                  get    login 404   404   3xx   3xx   3xx   3xx   3xx   3xx
crowd:label                       get    login 404   404   2xx   2xx   403   403   403   404
crowd:label-skip                  post   login 404   404   2xx   404   404   403   403   404
crowd:label-submit                post   login 404   404   422   404   404   403   403   404
crowd:member-block                post   login 404   404   403   403   403   403   422   422
crowd:member-remove               post   login 404   404   403   403   403   403   3xx   3xx
crowd:member-unblock              post   login 404   404   403   403   403   403   3xx   3xx
crowd:members                     get    login 404   404   403   403   403   403   2xx   2xx
crowd:suggestions                 get    login 404   404   403   403   403   403   2xx   2xx
external:qualification-retake     post   login 404   404   3xx   3xx   3xx   404   404   404
external:qualification-settings   get    login 404   404   403   403   403   403   2xx   2xx
external:qualification-test       get    login 404   404   3xx   3xx   3xx   404   404   404
external:study-done               get    login 404   404   404   404   404   404   404   404
external:study-entry              get    400   400   400   400   400   400   400   400   400
external:study-list               get    login 404   404   403   403   403   403   2xx   2xx
home                              get    3xx   3xx   3xx   3xx   3xx   3xx   3xx   3xx   3xx
label_import:label-import         get    login 404   404   403   403   403   403   2xx   2xx
model:page                        get    login 404   404   403   403   403   2xx   2xx   2xx
model:serving-order               post   login 404   404   403   403   403   403   3xx   3xx
model:train                       post   login 404   404   403   403   403   403   3xx   3xx
ops:healthz                       get    2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
ops:metrics                       get    2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
ops:readyz                        get    2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
pay:bonus                         post   login 404   404   403   403   403   403   422   422
pay:decide                        post   login 404   404   403   403   403   422   422   422
pay:earnings                      get    login 404   404   2xx   2xx   2xx   2xx   2xx   2xx
pay:overview                      get    login 404   404   403   403   403   2xx   2xx   2xx
pay:payout                        get    login 404   404   403   403   403   403   422   422
pay:settings                      post   login 404   404   403   403   403   403   422   422
pools:block                       post   login 404   404   404   404   404   404   422   422
pools:detail                      get    login 404   404   404   404   404   404   2xx   2xx
pools:invite-create               post   login 404   404   404   404   404   404   422   422
pools:invite-revoke               post   login 404   404   404   404   404   404   3xx   3xx
pools:join                        get    login 2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
pools:list                        get    login 2xx   2xx   2xx   2xx   2xx   2xx   2xx   2xx
pools:member-add                  post   login 404   404   404   404   404   404   422   422
pools:member-remove               post   login 404   404   404   404   404   404   3xx   3xx
pools:project                     get    login 404   404   403   403   403   403   2xx   2xx
pools:project-link                post   login 404   404   403   403   403   403   422   422
pools:project-unlink              post   login 404   404   403   403   403   403   3xx   3xx
pools:requirement-add             post   login 404   404   403   403   403   403   422   422
pools:requirement-remove          post   login 404   404   403   403   403   403   3xx   3xx
pools:unblock                     post   login 404   404   404   404   404   404   3xx   3xx
quality:action-undo               post   login 404   404   403   403   403   403   3xx   3xx
quality:actions                   get    login 404   404   403   403   403   403   2xx   2xx
quality:dashboard                 get    login 404   404   403   403   403   2xx   2xx   2xx
quality:gold-promote              post   login 404   404   403   403   403   403   3xx   3xx
quality:review                    get    login 404   404   403   403   403   2xx   2xx   2xx
quality:review-decide             post   login 404   404   403   403   403   422   422   422
quality:review-item               get    login 404   404   403   403   403   2xx   2xx   2xx
quality:settings                  get    login 404   404   403   403   403   403   2xx   2xx
releases:release-detail           get    login 404   404   403   403   403   2xx   2xx   2xx
releases:release-diff             get    login 404   404   403   403   403   2xx   2xx   2xx
releases:release-download         get    login 404   404   403   403   403   409   409   409
releases:release-list             get    login 404   404   403   403   403   2xx   2xx   2xx
releases:release-retry            get    login 405   405   405   405   405   405   405   405
releases:release-webhook          get    login 404   404   403   403   403   403   2xx   2xx
rules:rule-active                 post   login 404   404   403   403   403   403   3xx   3xx
rules:rule-delete                 post   login 404   404   403   403   403   403   3xx   3xx
rules:rule-edit                   get    login 404   404   403   403   403   403   2xx   2xx
rules:rule-list                   get    login 404   404   403   403   403   2xx   2xx   2xx
rules:rule-run                    post   login 404   404   403   403   403   403   3xx   3xx
schema:schema-apply               post   login 404   404   403   403   403   403   422   422
schema:schema-page                get    login 404   404   403   403   403   2xx   2xx   2xx
schema:schema-preview             post   login 404   404   403   403   403   403   422   422
"""
# fmt: on


@dataclass(frozen=True)
class Row:
    method: str
    expect: dict[str, object]


def _parse(table: str) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for line in table.strip().splitlines()[1:]:
        name, method, *cells = line.split()
        assert name not in rows, f"two rows for {name}"
        assert len(cells) == len(ROLES), f"{name}: one status per role, {len(ROLES)} of them"
        rows[name] = Row(
            method,
            {role: int(c) if c.isdigit() else c for role, c in zip(ROLES, cells, strict=True)},
        )
    return rows


EXPECTED = _parse(TABLE)


# --- the data ----------------------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, object]
    kwargs: dict[str, dict[str, object]]


def _build() -> World:
    owner = UserFactory(username="mx-owner")
    project = ProjectFactory(created_by=owner, name="Matrix")
    other = ProjectFactory(created_by=UserFactory(username="mx-other-owner"), name="Elsewhere")
    annotator = make_annotator(project, "mx-annotator")
    blocked = make_annotator(project, "mx-blocked")
    other_worker = make_annotator(other, "mx-other-worker")
    reviewer = UserFactory(username="mx-reviewer")
    project_member_set(project=project, user=reviewer, role=ProjectMember.Role.REVIEWER)
    outsider = UserFactory(username="mx-outsider")
    staff = UserFactory(username="mx-staff")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])

    external = UserFactory(username="mx-external")
    crowd = Pool.objects.create(
        name="Matrix crowd", kind=Pool.Kind.EXTERNAL_CROWD, created_by=owner
    )
    ProjectPool.objects.create(project=project, pool=crowd, rule=ProjectPool.Rule.LABEL)
    PoolMember.objects.create(pool=crowd, user=external)
    project_member_set(project=project, user=external, role=ProjectMember.Role.ANNOTATOR)

    items = ItemFactory.create_batch(4, project=project)
    gold = ItemFactory(project=project, gold={"label": "positive"})
    # The first item has a picture (served by URL): workers who were given it may see it.
    items[0].data = {**items[0].data, "image": "https://images.example.org/cat.png"}
    items[0].save(update_fields=["data"])
    for item in items[:2]:
        for user in (annotator, external, blocked):
            answer = vote(item, user, "positive")
            Assignment.objects.create(
                project=project,
                item=item,
                worker=user,
                status=Assignment.Status.SUBMITTED,
                annotation=answer,
                expires_at=timezone.now(),
                finished_at=timezone.now(),
            )
    vote(gold, annotator, "positive")
    assignment = assignment_claim_next(worker=annotator, project=project)
    assert assignment is not None
    block = worker_block(worker=blocked, project=project, reason="Matrix", created_by=owner)
    # A member blocked in the pool (and in no role of the matrix), for the pool's lift button.
    pool_blocked = UserFactory(username="mx-pool-blocked")
    PoolMember.objects.create(pool=crowd, user=pool_blocked)
    pool_block = worker_block(worker=pool_blocked, pool=crowd, reason="Matrix", created_by=owner)
    rule = LabelingRule.objects.create(
        project=project,
        name="Matrix rule",
        kind=LabelingRule.Kind.KEYWORDS,
        config={"keywords": ["great"]},
        label="positive",
        created_by=owner,
    )
    action = QualityAction.objects.create(
        project=project, worker=annotator, kind=QualityAction.Kind.FLAG, rule="matrix"
    )
    release = make_release(project, owner)
    invite = PoolInvite.objects.create(
        pool=crowd,
        token="mx-invite-token",
        created_by=owner,
        expires_at=timezone.now() + timedelta(days=1),
    )
    # A requirement every worker here meets: it exists to be removed, not to bar anyone.
    requirement = ProjectRequirement.objects.create(
        project=project, kind=ProjectRequirement.Kind.APPROVED, min_count=0
    )
    study = ExternalStudy.objects.create(
        project=project,
        pool=crowd,
        platform=ExternalStudy.Platform.PROLIFIC,
        slug="mx-study",
        completion_code="MXDONE",
    )
    job = ImportJob.objects.create(
        project=project,
        created_by=owner,
        file="imports/matrix.csv",
        original_name="matrix.csv",
        format=ImportJob.Format.values[0],
    )
    users = {
        "anonymous": None,
        "outsider": outsider,
        "other_worker": other_worker,
        "annotator": annotator,
        "external": external,
        "blocked": blocked,
        "reviewer": reviewer,
        "owner": owner,
        "staff": staff,
    }
    by_kwarg = {
        "pk": project.pk,
        "project_id": project.pk,
        "assignment_id": assignment.pk,
        "block_id": block.pk,
        "action_id": action.pk,
        "item_id": items[0].pk,
        "release_id": release.pk,
        "import_job_id": job.pk,
        "pool_id": crowd.pk,
        "user_id": external.pk,
        "invite_id": invite.pk,
        "token": invite.token,
        "requirement_id": requirement.pk,
        "slug": study.slug,
        "fmt": "jsonl",
        "rule_id": rule.pk,
        "rule_pk": rule.pk,
    }
    # Where `pk` is not a project.
    pk_is = {
        "annotation:import-detail": job.pk,
        "releases:release-detail": release.pk,
        "releases:release-retry": release.pk,
        "releases:release-download": release.pk,
    }
    # Where `block_id` is a pool's block, not the project's.
    pool_block_urls = {"pools:unblock"}
    kwargs = {}
    for name, pattern in url_patterns():
        values = {key: by_kwarg[key] for key in pattern.pattern.converters}
        if "pk" in values and name in pk_is:
            values["pk"] = pk_is[name]
        if name in pool_block_urls:
            values["block_id"] = pool_block.pk
        kwargs[name] = values
    return World(users=users, kwargs=kwargs)


def url_patterns() -> Iterator[tuple[str, URLPattern]]:
    """(qualified name, pattern) of every named URL pattern, outside the skipped ones."""

    def walk(patterns: list, namespace: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                if pattern.namespace in SKIPPED_NAMESPACES:
                    continue
                yield from walk(pattern.url_patterns, inner)
            elif pattern.name:
                name = f"{namespace}{pattern.name}"
                if name not in SKIPPED_NAMES:
                    yield name, pattern

    return walk(get_resolver().url_patterns, "")


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), transaction.atomic():
        yield _build()
        transaction.set_rollback(True)


# --- the checks --------------------------------------------------------------------------------


def _observed(response) -> object:
    code = response.status_code
    if code == 302 and "/accounts/login/" in response.get("Location", ""):
        return LOGIN
    if 200 <= code < 300:
        return OK
    if code in (301, 302, 303, 307, 308):
        return FOUND
    return code


def _request(client: Client, method: str, url: str):
    with transaction.atomic():
        response = getattr(client, method)(url)
        transaction.set_rollback(True)
    return response


def _clients(world: World) -> dict[str, Client]:
    clients = {}
    for role, user in world.users.items():
        client = Client()
        if user is not None:
            client.force_login(user)
        clients[role] = client
    return clients


def test_every_url_has_a_row():
    names = {name for name, _ in url_patterns()}
    missing = sorted(names - set(EXPECTED))
    stale = sorted(set(EXPECTED) - names)
    assert not missing, f"URL names without a row in EXPECTED: {missing}"
    assert not stale, f"Rows for URL names that no longer exist: {stale}"


def test_every_row_names_every_role():
    for name, entry in EXPECTED.items():
        assert set(entry.expect) == set(ROLES), name
        assert entry.method in METHODS, name


@pytest.mark.django_db
def test_each_role_gets_the_expected_answer(world):
    clients = _clients(world)
    dump = os.environ.get("ASSAY_AUTHZ_DUMP")
    mismatches = []
    observed = []
    for name in sorted(world.kwargs):
        entry = EXPECTED.get(name)
        method = entry.method if entry else "get"
        url = reverse(name, kwargs=world.kwargs[name])
        seen = {}
        for role in ROLES:
            seen[role] = _observed(_request(clients[role], method, url))
            if entry and seen[role] != entry.expect[role]:
                mismatches.append(
                    f"{name} {method.upper()} {url} as {role}: "
                    f"expected {entry.expect[role]}, got {seen[role]}"
                )
        observed.append(f"{name:33} {method:6} " + " ".join(f"{seen[r]!s:5}" for r in ROLES))
    if dump:
        Path(dump).write_text("\n".join(observed) + "\n")
    assert not mismatches, "\n".join(mismatches)
