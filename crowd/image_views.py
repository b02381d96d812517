"""Item images, served only to those who may see the item.

GET /projects/<pk>/items/<item_id>/image/ answers the item's `image`; `?side=a` and `?side=b`
answer a pair's `image_a` and `image_b` (pairwise). Who may see it:

- the project's owners and reviewers, and staff: any item image of the project;
- an annotator: images of items they were given (they hold or held an Assignment for the item,
  in any status), and of the qualification test's items once they started an attempt;
- everyone else: 404, as for the project itself (annotation.access.project_access), so neither
  the project nor the item is revealed. Anonymous users are sent to log in.

A stored image (a path in the default storage, from an image zip import) is streamed with its
content type, `Cache-Control: private, max-age=3600` and `X-Content-Type-Options: nosniff`; an
image given by http(s) URL answers a 302 to that URL after the same check.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_GET

from annotation.access import MANAGERS, project_access
from annotation.imports.parsing import URL_PREFIXES
from annotation.imports.zips import content_type_of
from annotation.models import Item
from crowd.models import Assignment, QualificationAttempt

SIDES = {"": "image", "a": "image_a", "b": "image_b"}
CACHE_CONTROL = "private, max-age=3600"


def _annotator_may_see(user_id: int, item: Item) -> bool:
    """The annotator was given the item, or it is a test item of an attempt they started."""
    if Assignment.objects.filter(item_id=item.pk, worker_id=user_id).exists():
        return True
    return QualificationAttempt.objects.filter(
        worker_id=user_id,
        qualification__project_id=item.project_id,
        qualification__items=item.pk,
    ).exists()


@login_required
@require_GET
def item_image(request: HttpRequest, pk: int, item_id: int) -> HttpResponse:
    """The item's image (`?side=a|b`: one of a pair's), after the access check."""
    project, role = project_access(user=request.user, project_id=pk)
    key = SIDES.get(request.GET.get("side", ""))
    item = Item.objects.filter(project=project, pk=item_id).only("id", "project_id", "data")
    found = item.first()
    if key is None or found is None:
        raise Http404("No such image.")
    manager = request.user.is_staff or role in MANAGERS
    if not manager and not _annotator_may_see(request.user.pk, found):
        raise Http404("No such image.")
    ref = found.data.get(key) if isinstance(found.data, dict) else None
    if not isinstance(ref, str) or not ref:
        raise Http404("This item has no such image.")
    if ref.startswith(URL_PREFIXES):
        return HttpResponseRedirect(ref)
    # Only the project's own stored images: never another path a row might name.
    if not ref.startswith(f"items/{project.pk}/") or ".." in ref or "\\" in ref:
        raise Http404("No such image.")
    try:
        stream = default_storage.open(ref, "rb")
    except FileNotFoundError:
        raise Http404("The image file is missing.") from None
    response = FileResponse(stream, content_type=content_type_of(ref))
    response["Cache-Control"] = CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response
