"""OPTIONS on the list-and-create endpoints describes their input instead of failing (500)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/projects/", "name"),
        ("/api/v1/projects/{project_id}/predictions/", "predictions"),
        ("/api/v1/projects/{project_id}/schema/versions/", "operations"),
    ],
)
def test_options_describes_the_post_input(client_for, project, path, field):
    response = client_for(project.created_by).options(path.format(project_id=project.pk))

    assert response.status_code == 200
    assert field in response.json()["actions"]["POST"]
