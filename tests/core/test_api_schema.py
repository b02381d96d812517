from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

REQUIRED_PATHS = {
    "/api/v1/auth/token/": {"post"},
    "/api/v1/users/": {"post"},
    "/api/v1/projects/": {"get", "post"},
    "/api/v1/projects/{id}/": {"get", "patch"},
    "/api/v1/projects/{id}/imports/": {"post"},
    "/api/v1/imports/{id}/": {"get"},
    "/api/v1/projects/{id}/items/": {"get"},
    "/api/v1/projects/{id}/next/": {"post"},
    "/api/v1/assignments/{id}/submit/": {"post"},
    "/api/v1/assignments/{id}/skip/": {"post"},
    "/api/v1/projects/{id}/quality/": {"get"},
    "/api/v1/projects/{id}/releases/": {"get", "post"},
    "/api/v1/releases/{id}/": {"get"},
    "/api/v1/releases/{id}/download/": {"get"},
    "/api/v1/projects/{id}/members/": {"get", "post"},
}


def _normalise(path: str) -> str:
    import re

    return re.sub(r"\{[a-z_]+\}", "{id}", path)


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    assert out.stat().st_size > 1000


def test_schema_lists_every_operation_the_issue_names(owner):
    client = APIClient()
    client.force_authenticate(owner)

    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    paths = {_normalise(path): set(ops) for path, ops in schema["paths"].items()}
    for path, methods in REQUIRED_PATHS.items():
        assert path in paths, path
        assert methods <= paths[path], (path, paths[path])


def test_docs_page_is_served(owner):
    client = APIClient()
    client.force_authenticate(owner)

    response = client.get("/api/v1/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"jsdelivr" not in response.content
    assert b"/static/drf_spectacular_sidecar/" in response.content


def test_user_create_answer_without_email_matches_its_schema(owner):
    from jsonschema import Draft202012Validator, FormatChecker

    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    client = APIClient()
    client.force_authenticate(owner)
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    answer = schema["paths"]["/api/v1/users/"]["post"]["responses"]["201"]
    ref = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]

    response = client.post(
        "/api/v1/users/", {"username": "no-mail", "password": "a-Long-passw0rd!"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["email"] == ""
    validator = Draft202012Validator(
        schema["components"]["schemas"][ref], format_checker=FormatChecker()
    )
    assert list(validator.iter_errors(response.json())) == []


def test_error_answers_documented_by_description_carry_the_error_shape(project, worker, owner):
    from jsonschema import Draft202012Validator

    from crowd.services import worker_block

    worker_block(worker=worker, project=project, reason="Spam", created_by=owner)
    client = APIClient()
    client.force_authenticate(worker)
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    forbidden = schema["paths"]["/api/v1/projects/{project_id}/next/"]["post"]["responses"]["403"]

    response = client.post(f"/api/v1/projects/{project.pk}/next/")

    assert response.status_code == 403
    assert response.json()["code"] == "blocked"
    assert "blocked (with the reason)" in forbidden["description"]
    ref = forbidden["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    error_schema = schema["components"]["schemas"][ref]
    assert list(Draft202012Validator(error_schema).iter_errors(response.json())) == []
