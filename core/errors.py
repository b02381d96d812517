"""The site's 500 handler: a lost database is a clean, retryable 503, not a 500.

Pages (not only the API, whose exception handler does the same) answer 503 with Retry-After when
PostgreSQL is restarting or unreachable, including errors raised while middleware loads the
session or the user, which never reach a view. Rendered without a request context, like Django's
own handler: the page must not need the database it is reporting as gone.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template import loader

RETRY_AFTER_SECONDS = 5


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    """500.html for errors, 503.html with Retry-After when the database is unavailable."""
    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        response = HttpResponse(loader.get_template("503.html").render(), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return HttpResponseServerError(loader.get_template(template_name).render())
