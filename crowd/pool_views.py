"""HTML pages of pools: the owner's pools, one pool (members, invites, projects), joining by an
invite link, and a project's pools and requirements (owners only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotation.access import OWNERS, project_access
from annotation.models import Project
from core.http import HtmxHttpRequest
from crowd.models import Pool, PoolInvite, ProjectPool, ProjectRequirement, WorkerBlock
from crowd.pools import (
    INVITE_MESSAGES,
    InviteInvalidError,
    pool_create,
    pool_get_for_owner,
    pool_invite_accept,
    pool_invite_create,
    pool_invite_get,
    pool_invite_list,
    pool_invite_revoke,
    pool_invite_state,
    pool_list_for_owner,
    pool_member_add,
    pool_member_list,
    pool_member_remove,
    pool_project_list,
    project_pool_link,
    project_pool_list,
    project_pool_unlink,
    project_requirement_add,
    project_requirement_list,
    project_requirement_remove,
)
from crowd.services.blocks import (
    pool_block_get,
    pool_block_list,
    pool_worker_block,
    worker_unblock,
)

OWNERS_ONLY = "Only the project's owners manage its pools and requirements."


class PoolForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=Pool.Kind.choices)


class PoolMemberForm(forms.Form):
    username = forms.CharField(max_length=150)


class PoolBlockForm(forms.Form):
    username = forms.CharField(max_length=150)
    reason = forms.CharField(max_length=500)


class InviteForm(forms.Form):
    expires_in_hours = forms.IntegerField(min_value=1, max_value=90 * 24, initial=72)
    max_uses = forms.IntegerField(min_value=1, max_value=10_000, initial=20)


class LinkForm(forms.Form):
    pool = forms.TypedChoiceField(coerce=int, choices=())
    rule = forms.ChoiceField(choices=ProjectPool.Rule.choices)

    def __init__(self, *args: Any, pools: list[Pool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pool"].choices = [(p.pk, f"{p.name} ({p.get_kind_display()})") for p in pools]


class RequirementForm(forms.Form):
    kind = forms.ChoiceField(choices=ProjectRequirement.Kind.choices)
    skill_name = forms.CharField(max_length=100, required=False)
    min_score = forms.FloatField(min_value=0, max_value=100, required=False)
    min_count = forms.IntegerField(min_value=1, required=False)
    pool = forms.TypedChoiceField(coerce=int, choices=(), required=False, empty_value=None)

    def __init__(self, *args: Any, pools: list[Pool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pool"].choices = [("", "—"), *((p.pk, p.name) for p in pools)]


def _errors_to(form: forms.Form, error: ValidationError) -> None:
    errors = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    for name, texts in errors.items():
        form.add_error(name if name in form.fields else None, texts)


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _owned_pool(request: HtmxHttpRequest, pool_id: int) -> Pool:
    try:
        return pool_get_for_owner(user=request.user, pool_id=pool_id)  # type: ignore[arg-type]
    except Pool.DoesNotExist:
        raise Http404("No such pool.") from None


# --- the owner's pools ------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def pool_list(request: HtmxHttpRequest) -> HttpResponse:
    """The pools the user manages; create one."""
    form = PoolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            pool = pool_create(created_by=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        except ValidationError as error:
            _errors_to(form, error)
        else:
            messages.success(request, f"Pool “{pool.name}” created.")
            return _go(request, reverse("pools:detail", args=[pool.pk]))
    context = {"pools": pool_list_for_owner(user=request.user), "form": form}  # type: ignore[arg-type]
    return TemplateResponse(
        request, "crowd/pool_list.html", context, status=422 if form.errors else 200
    )


def _detail_page(request: HtmxHttpRequest, pool: Pool, **forms_: Any) -> TemplateResponse:
    context: dict[str, Any] = {
        "pool": pool,
        "members": pool_member_list(pool=pool),
        "invites": [
            (invite, pool_invite_state(invite=invite)) for invite in pool_invite_list(pool=pool)
        ],
        "links": pool_project_list(pool=pool),
        "blocks": pool_block_list(pool=pool),
        "member_form": PoolMemberForm(),
        "invite_form": InviteForm(),
        "block_form": PoolBlockForm(),
    }
    context.update(forms_)
    invalid = any(form.errors for form in forms_.values())
    return TemplateResponse(
        request, "crowd/pool_detail.html", context, status=422 if invalid else 200
    )


@login_required
@require_http_methods(["GET"])
def pool_detail(request: HtmxHttpRequest, pool_id: int) -> HttpResponse:
    """One pool: members, invite links and the projects it serves (its manager only)."""
    return _detail_page(request, _owned_pool(request, pool_id))


@login_required
@require_POST
def pool_member_add_view(request: HtmxHttpRequest, pool_id: int) -> HttpResponse:
    pool = _owned_pool(request, pool_id)
    form = PoolMemberForm(request.POST)
    if form.is_valid():
        try:
            pool_member_add(
                pool=pool,
                username=form.cleaned_data["username"],
                actor=request.user,  # type: ignore[arg-type]
            )
        except ValidationError as error:
            _errors_to(form, error)
        else:
            messages.success(request, f"{form.cleaned_data['username']} joined the pool.")
            return _go(request, reverse("pools:detail", args=[pool.pk]))
    return _detail_page(request, pool, member_form=form)


@login_required
@require_POST
def pool_member_remove_view(request: HtmxHttpRequest, pool_id: int, user_id: int) -> HttpResponse:
    pool = _owned_pool(request, pool_id)
    try:
        pool_member_remove(pool=pool, user_id=user_id, actor=request.user)  # type: ignore[arg-type]
    except ValidationError:
        raise Http404("No such member.") from None
    messages.success(request, "Member removed from the pool.")
    return _go(request, reverse("pools:detail", args=[pool.pk]))


@login_required
@require_POST
def pool_block_view(request: HtmxHttpRequest, pool_id: int) -> HttpResponse:
    """Block a member from every project the pool serves, with a reason (the manager only)."""
    pool = _owned_pool(request, pool_id)
    form = PoolBlockForm(request.POST)
    if form.is_valid():
        try:
            pool_worker_block(pool=pool, created_by=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        except ValidationError as error:
            _errors_to(form, error)
        else:
            messages.success(request, f"{form.cleaned_data['username']} is blocked in this pool.")
            return _go(request, reverse("pools:detail", args=[pool.pk]))
    return _detail_page(request, pool, block_form=form)


@login_required
@require_POST
def pool_unblock_view(request: HtmxHttpRequest, pool_id: int, block_id: int) -> HttpResponse:
    """Lift a pool block (kept as history)."""
    pool = _owned_pool(request, pool_id)
    try:
        block = pool_block_get(pool=pool, block_id=block_id)
    except WorkerBlock.DoesNotExist:
        raise Http404("No such block.") from None
    worker_unblock(block=block, lifted_by=request.user)  # type: ignore[arg-type]
    messages.success(request, f"{block.worker.get_username()} is no longer blocked.")
    return _go(request, reverse("pools:detail", args=[pool.pk]))


@login_required
@require_POST
def pool_invite_create_view(request: HtmxHttpRequest, pool_id: int) -> HttpResponse:
    pool = _owned_pool(request, pool_id)
    form = InviteForm(request.POST)
    if form.is_valid():
        pool_invite_create(pool=pool, created_by=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        messages.success(request, "Invite link created.")
        return _go(request, reverse("pools:detail", args=[pool.pk]))
    return _detail_page(request, pool, invite_form=form)


@login_required
@require_POST
def pool_invite_revoke_view(request: HtmxHttpRequest, pool_id: int, invite_id: int) -> HttpResponse:
    pool = _owned_pool(request, pool_id)
    invite = PoolInvite.objects.filter(pool=pool, pk=invite_id).first()
    if invite is None:
        raise Http404("No such invite.")
    pool_invite_revoke(invite=invite)
    messages.success(request, "Invite link revoked.")
    return _go(request, reverse("pools:detail", args=[pool.pk]))


# --- joining by invite ------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def pool_join(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """Show an invite (and why it can't be used), and join its pool on POST."""
    try:
        invite = pool_invite_get(token=token)
    except InviteInvalidError as error:
        context: dict[str, Any] = {"problem": error.message}
        return TemplateResponse(request, "crowd/pool_join.html", context, status=404)
    if request.method == "POST":
        try:
            pool_invite_accept(token=token, user=request.user)  # type: ignore[arg-type]
        except InviteInvalidError:
            pass  # the page below says why
        else:
            messages.success(request, f"You joined the pool “{invite.pool.name}”.")
            return _go(request, reverse("annotation:project-list"))
    invite.refresh_from_db()
    state = pool_invite_state(invite=invite)
    context = {"invite": invite, "problem": INVITE_MESSAGES.get(state, "")}
    return TemplateResponse(
        request, "crowd/pool_join.html", context, status=410 if state != "valid" else 200
    )


# --- a project's pools and requirements -------------------------------------------------------


def _project_page(
    request: HtmxHttpRequest, project: Project, role: str, **forms_: Any
) -> TemplateResponse:
    pools = list(pool_list_for_owner(user=request.user))  # type: ignore[arg-type]
    links = list(project_pool_list(project=project))
    linked = [link.pool for link in links]
    context: dict[str, Any] = {
        "project": project,
        "role": role,
        "links": links,
        "requirements": project_requirement_list(project=project),
        "link_form": LinkForm(pools=pools),
        "requirement_form": RequirementForm(pools=linked),
    }
    context.update(forms_)
    invalid = any(form.errors for form in forms_.values())
    return TemplateResponse(
        request, "crowd/pool_project.html", context, status=422 if invalid else 200
    )


def _owned_project(request: HtmxHttpRequest, pk: int) -> tuple[Project, str]:
    return project_access(user=request.user, project_id=pk, roles=OWNERS, denied=OWNERS_ONLY)


@login_required
@require_http_methods(["GET"])
def project_pools(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The pools a project draws from, with their rules, and its requirements (owners only)."""
    project, role = _owned_project(request, pk)
    return _project_page(request, project, role)


@login_required
@require_POST
def project_pool_link_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    project, role = _owned_project(request, pk)
    pools = list(pool_list_for_owner(user=request.user))  # type: ignore[arg-type]
    form = LinkForm(request.POST, pools=pools)
    if form.is_valid():
        pool = next(p for p in pools if p.pk == form.cleaned_data["pool"])
        project_pool_link(
            project=project,
            pool=pool,
            rule=form.cleaned_data["rule"],
            actor=request.user,  # type: ignore[arg-type]
        )
        messages.success(request, f"The project now draws from “{pool.name}”.")
        return _go(request, reverse("pools:project", args=[project.pk]))
    return _project_page(request, project, role, link_form=form)


@login_required
@require_POST
def project_pool_unlink_view(request: HtmxHttpRequest, pk: int, pool_id: int) -> HttpResponse:
    project, _role = _owned_project(request, pk)
    link = ProjectPool.objects.select_related("pool").filter(project=project, pool_id=pool_id)
    found = link.first()
    if found is None:
        raise Http404("No such pool on this project.")
    project_pool_unlink(project=project, pool=found.pool, actor=request.user)  # type: ignore[arg-type]
    messages.success(request, f"The project no longer draws from “{found.pool.name}”.")
    return _go(request, reverse("pools:project", args=[project.pk]))


@login_required
@require_POST
def project_requirement_add_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    project, role = _owned_project(request, pk)
    linked = [link.pool for link in project_pool_list(project=project)]
    form = RequirementForm(request.POST, pools=linked)
    if form.is_valid():
        data = dict(form.cleaned_data)
        pool_id = data.pop("pool")
        data["skill_name"] = data["skill_name"] or ""
        pool = next((p for p in linked if p.pk == pool_id), None)
        try:
            project_requirement_add(project=project, pool=pool, actor=request.user, **data)  # type: ignore[arg-type]
        except ValidationError as error:
            _errors_to(form, error)
        else:
            messages.success(request, "Requirement added.")
            return _go(request, reverse("pools:project", args=[project.pk]))
    return _project_page(request, project, role, requirement_form=form)


@login_required
@require_POST
def project_requirement_remove_view(
    request: HtmxHttpRequest, pk: int, requirement_id: int
) -> HttpResponse:
    project, _role = _owned_project(request, pk)
    try:
        project_requirement_remove(
            project=project,
            requirement_id=requirement_id,
            actor=request.user,  # type: ignore[arg-type]
        )
    except ValidationError:
        raise Http404("No such requirement.") from None
    messages.success(request, "Requirement removed.")
    return _go(request, reverse("pools:project", args=[project.pk]))
