"""The whole REST API fuzzed from its own OpenAPI schema (schemathesis), as each role.

The schema is loaded from the app (`/api/v1/schema/`, drf-spectacular) through WSGI. Every
operation becomes one test; each generated example is sent as several roles (token auth) and must
answer without a 5xx, with a documented status code, the documented content type and a body that
matches the documented schema.

The roles are the authorization matrix's. Every example goes to the core ones (anonymous,
annotator, reviewer, owner); the others (outsider, worker of another project, external worker,
blocked worker, staff) take turns, EXTRA_PER_EXAMPLE of them per example in a fixed rotation per
operation, so each of them still meets every operation a few times while the file's runtime stays
about 1.5x that of the core roles alone.

Path parameters point at the real objects of a shared world (the authorization matrix's: a
project with items, gold, annotations, a release, a rule, a pool, a study...), so the fuzzer
reaches the views' logic instead of stopping at 404. The world is built once for the module in
a transaction rolled back at the end; each call runs in a savepoint rolled back after it, so no
example sees another's writes. Generation is derandomized with a bounded number of examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from tests.test_authorization_matrix import ROLES as MATRIX_ROLES
from tests.test_authorization_matrix import _build

CORE_ROLES = ("anonymous", "annotator", "reviewer", "owner")
EXTRA_ROLES = ("outsider", "other_worker", "external", "blocked", "staff")
EXTRA_PER_EXAMPLE = 2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 6
ROLES = CORE_ROLES + EXTRA_ROLES
assert set(ROLES) == set(MATRIX_ROLES), "fuzz every role of the authorization matrix"

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


@dataclass
class FuzzWorld:
    headers: dict[str, dict[str, str]]
    path_values: dict[str, object]
    examples_seen: dict[str, int] = field(default_factory=dict)

    def roles_for(self, operation: str) -> tuple[str, ...]:
        """The core roles, then the next EXTRA_PER_EXAMPLE extra roles in this operation's turn."""
        seen = self.examples_seen.get(operation, 0)
        self.examples_seen[operation] = seen + 1
        start = seen * EXTRA_PER_EXAMPLE
        extra = (EXTRA_ROLES[(start + i) % len(EXTRA_ROLES)] for i in range(EXTRA_PER_EXAMPLE))
        return (*CORE_ROLES, *extra)


@pytest.fixture(scope="module")
def _keep_connection() -> Iterator[None]:
    """Keep the test's database connection open across WSGI requests (as Django's Client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def fuzz_world(django_db_setup, django_db_blocker, _keep_connection) -> Iterator[FuzzWorld]:
    with django_db_blocker.unblock(), transaction.atomic():
        world = _build()
        headers: dict[str, dict[str, str]] = {}
        for role in ROLES:
            user = world.users[role]
            if user is None:
                headers[role] = {}
            else:
                token, _ = Token.objects.get_or_create(user=user)
                headers[role] = {"Authorization": f"Token {token.key}"}
        values: dict[str, object] = {}
        for kwargs in world.kwargs.values():
            for key, value in kwargs.items():
                if key != "pk":
                    values.setdefault(key, value)
        values["id"] = values["project_id"]
        yield FuzzWorld(headers=headers, path_values=values)
        transaction.set_rollback(True)


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, fuzz_world: FuzzWorld) -> None:
    for name in list(case.path_parameters or {}):
        if name in fuzz_world.path_values:
            case.path_parameters[name] = fuzz_world.path_values[name]
    for role in fuzz_world.roles_for(case.operation.label):
        with transaction.atomic():
            response = case.call(headers=fuzz_world.headers[role])
            transaction.set_rollback(True)
        case.validate_response(response, checks=CHECKS, headers=fuzz_world.headers[role])
