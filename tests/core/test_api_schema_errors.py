"""The schema documents the error answers each operation can give, in the API's error shape."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema() -> dict:
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def _codes(schema: dict, path: str, method: str) -> set[str]:
    return set(schema["paths"][path][method]["responses"])


def test_every_operation_documents_input_and_conflict_errors(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"400", "409"} <= set(operation["responses"]), f"{method.upper()} {path}"


def test_auth_errors_only_where_credentials_are_needed(schema):
    assert {"401", "403"} <= _codes(schema, "/api/v1/projects/", "get")
    assert "401" not in _codes(schema, "/api/v1/auth/token/", "post")


def test_throttled_operations_document_too_many_requests(schema):
    assert "429" in _codes(schema, "/api/v1/auth/token/", "post")


def test_not_found_for_paths_naming_an_object_and_for_pages(schema):
    assert "404" in _codes(schema, "/api/v1/projects/{project_id}/", "get")
    assert "404" in _codes(schema, "/api/v1/projects/", "get")  # an invalid page
    assert "404" not in _codes(schema, "/api/v1/auth/token/", "post")


def test_bodies_may_be_refused_for_their_media_type(schema):
    assert "415" in _codes(schema, "/api/v1/projects/", "post")
    assert "415" not in _codes(schema, "/api/v1/projects/", "get")


def test_errors_use_the_error_shape(schema):
    body = schema["paths"]["/api/v1/projects/"]["get"]["responses"]["403"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"detail", "code", "fields"}
