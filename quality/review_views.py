"""HTML pages for expert review: one item at a time, keyboard first, the next item in one trip.

The page shows the queue's next item (`?after=<item id>` moves past an item: skipping), or a
given item opened directly. A decision is a plain form POST; with htmx the answer is the next
item's stage (200) or the same item with the error (422), and the address bar follows.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from annotation.access import MANAGERS, project_access
from annotation.models import Project
from core.http import HtmxHttpRequest
from quality.review import (
    ItemReview,
    item_review_get,
    review_decide,
    review_queue_count,
    review_queue_next,
)

DENIED = "Only the project's owners and reviewers review items."
TEMPLATE = "quality/review.html"


def _page(
    request: HtmxHttpRequest,
    *,
    project: Project,
    role: str,
    review: ItemReview | None,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The review page, or only its stage for htmx, with the address bar on the shown item."""
    context = {
        "project": project,
        "role": role,
        "review": review,
        "queue_count": review_queue_count(project=project, reviewer=request.user),
        **(extra or {}),
    }
    template = f"{TEMPLATE}#review-stage" if request.htmx else TEMPLATE
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    if request.htmx and status == 200:
        push_url(response, _item_url(project.pk, review))
    return response


def _item_url(project_id: int, review: ItemReview | None) -> str:
    return _url_for(project_id, review.item.pk if review else None)


def _url_for(project_id: int, item_id: int | None) -> str:
    if item_id is None:
        return reverse("quality:review", kwargs={"pk": project_id})
    return reverse("quality:review-item", kwargs={"pk": project_id, "item_id": item_id})


def _after(request: HtmxHttpRequest) -> int | None:
    value = request.GET.get("after", "")
    return int(value) if value.isdigit() else None


@login_required
@require_GET
def review_next(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The queue's next item (after `?after=` when skipping), or an empty queue."""
    project, role = project_access(user=request.user, project_id=pk, roles=MANAGERS, denied=DENIED)
    score = review_queue_next(project=project, reviewer=request.user, after=_after(request))
    review = item_review_get(project=project, item_id=score.item_id) if score else None
    return _page(request, project=project, role=role, review=review)


@login_required
@require_GET
def review_item(request: HtmxHttpRequest, pk: int, item_id: int) -> HttpResponse:
    """Any item of the project, opened directly (from the dashboard or a link)."""
    project, role = project_access(user=request.user, project_id=pk, roles=MANAGERS, denied=DENIED)
    review = item_review_get(project=project, item_id=item_id)
    return _page(request, project=project, role=role, review=review)


@login_required
@require_POST
def review_item_decide(request: HtmxHttpRequest, pk: int, item_id: int) -> HttpResponse:
    """Store the decision, then show the next queued item (422 with the error if invalid)."""
    project, role = project_access(user=request.user, project_id=pk, roles=MANAGERS, denied=DENIED)
    review = item_review_get(project=project, item_id=item_id)
    label = request.POST.get("label", "")
    action = request.POST.get("action") or review.action_for(label)
    try:
        decision = review_decide(
            item=review.item, reviewer=request.user, action=action, label=label
        )
    except ValidationError as exc:
        errors = [message for messages in exc.message_dict.values() for message in messages]
        extra = {"errors": errors}
        return _page(request, project=project, role=role, review=review, extra=extra, status=422)
    score = review_queue_next(project=project, reviewer=request.user, after=item_id)
    if not request.htmx:
        return redirect(_url_for(project.pk, score.item_id if score else None))
    following = item_review_get(project=project, item_id=score.item_id) if score else None
    extra = {"saved": decision, "saved_item_id": item_id}
    return _page(request, project=project, role=role, review=following, extra=extra)
