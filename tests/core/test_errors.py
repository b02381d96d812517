"""Pages answer a lost database with a retryable 503 page; other errors keep the 500 page."""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client, override_settings
from django.urls import include, path

from core.errors import server_error


def _lost_database(request):
    raise OperationalError("server closed the connection unexpectedly")


def _bug(request):
    raise ZeroDivisionError


urlpatterns = [path("lost/", _lost_database), path("bug/", _bug), path("", include("config.urls"))]
handler500 = "core.errors.server_error"


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_a_lost_database_is_a_503_with_retry_after(rf, error):
    try:
        raise error("connection refused")
    except error:
        response = server_error(rf.get("/projects/"))

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "briefly unavailable" in response.content.decode()


@override_settings(ROOT_URLCONF=__name__)
def test_pages_answer_503_for_the_database_and_500_for_other_errors():
    client = Client(raise_request_exception=False)

    lost, bug = client.get("/lost/"), client.get("/bug/")

    assert (lost.status_code, lost["Retry-After"]) == (503, "5")
    assert bug.status_code == 500
    assert "Something went wrong on our side" in bug.content.decode()


def test_the_site_uses_this_handler():
    from config import urls

    assert urls.handler500 == "core.errors.server_error"
