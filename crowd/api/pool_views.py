"""The pools API: the caller's pools and their members and invites, joining by invite token,
and a project's pool links and requirements.

Who may do what: a pool is managed by whoever created it (staff: every pool); a project's
pools and requirements by its owners. Anyone else gets 404 for a pool and, for a project,
404 without a role and 403 with another one. Joining needs only a logged-in user.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import OWNERS, project_access
from annotation.models import Project
from crowd.models import Pool, PoolInvite, PoolMember, ProjectPool, ProjectRequirement
from crowd.pools import (
    INVITE_MAX_USES,
    pool_create,
    pool_get_for_owner,
    pool_invite_accept,
    pool_invite_create,
    pool_invite_revoke,
    pool_list_for_owner,
    pool_member_add,
    pool_member_list,
    pool_member_remove,
    project_pool_link,
    project_pool_list,
    project_pool_unlink,
    project_requirement_add,
    project_requirement_list,
    project_requirement_remove,
)

OWNERS_ONLY = "Only the project's owners manage its pools and requirements."


class PoolInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=Pool.Kind.choices)


class PoolOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    member_count = serializers.IntegerField(default=0)
    project_count = serializers.IntegerField(default=0)


class PoolMemberInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)


class PoolMemberOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    created_at = serializers.DateTimeField()


class InviteInputSerializer(serializers.Serializer):
    expires_in_hours = serializers.IntegerField(min_value=1, max_value=90 * 24)
    max_uses = serializers.IntegerField(min_value=1, max_value=INVITE_MAX_USES)


class InviteOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    max_uses = serializers.IntegerField()
    uses = serializers.IntegerField()
    revoked_at = serializers.DateTimeField(allow_null=True)


class JoinOutputSerializer(serializers.Serializer):
    pool_id = serializers.IntegerField()
    pool = serializers.CharField(source="pool.name")


class LinkInputSerializer(serializers.Serializer):
    pool = serializers.IntegerField()
    rule = serializers.ChoiceField(choices=ProjectPool.Rule.choices)


class LinkOutputSerializer(serializers.Serializer):
    pool_id = serializers.IntegerField()
    pool = serializers.CharField(source="pool.name")
    kind = serializers.CharField(source="pool.kind")
    rule = serializers.CharField()
    member_count = serializers.IntegerField(default=None)


class RequirementInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ProjectRequirement.Kind.choices)
    skill_name = serializers.CharField(max_length=100, required=False, default="")
    min_score = serializers.FloatField(min_value=0, max_value=100, required=False)
    min_count = serializers.IntegerField(min_value=1, required=False)
    pool = serializers.IntegerField(required=False)


class RequirementOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    skill_name = serializers.CharField()
    min_score = serializers.FloatField(allow_null=True)
    min_count = serializers.IntegerField(allow_null=True)
    pool_id = serializers.IntegerField(allow_null=True)


def _pool(request: Request, pool_id: int) -> Pool:
    user: AbstractBaseUser = request.user  # type: ignore[assignment]
    try:
        return pool_get_for_owner(user=user, pool_id=pool_id)
    except Pool.DoesNotExist:
        raise NotFound("No such pool.") from None


def _project(request: Request, project_id: int) -> Project:
    return project_access(
        user=request.user, project_id=project_id, roles=OWNERS, denied=OWNERS_ONLY
    )[0]


class PoolListApi(APIView):
    """The caller's pools (GET) and a new pool (POST)."""

    @extend_schema(responses={200: PoolOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        pools = pool_list_for_owner(user=request.user)  # type: ignore[arg-type]
        return Response(PoolOutputSerializer(pools, many=True).data)

    @extend_schema(request=PoolInputSerializer, responses={201: PoolOutputSerializer})
    def post(self, request: Request) -> Response:
        data = PoolInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pool = pool_create(created_by=request.user, **data.validated_data)  # type: ignore[arg-type]
        return Response(PoolOutputSerializer(pool).data, status=status.HTTP_201_CREATED)


class PoolMemberListApi(APIView):
    """A pool's members (GET) and adding an existing user (POST); the pool's manager only."""

    @extend_schema(responses={200: PoolMemberOutputSerializer(many=True)})
    def get(self, request: Request, pool_id: int) -> Response:
        members = pool_member_list(pool=_pool(request, pool_id))
        return Response(PoolMemberOutputSerializer(members, many=True).data)

    @extend_schema(request=PoolMemberInputSerializer, responses={201: PoolMemberOutputSerializer})
    def post(self, request: Request, pool_id: int) -> Response:
        pool = _pool(request, pool_id)
        data = PoolMemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = pool_member_add(
            pool=pool, username=data.validated_data["username"], actor=request.user
        )
        return Response(PoolMemberOutputSerializer(member).data, status=status.HTTP_201_CREATED)


class PoolMemberRemoveApi(APIView):
    """Take a user out of a pool (and the roles only it gave them)."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, pool_id: int, user_id: int) -> Response:
        pool = _pool(request, pool_id)
        if not PoolMember.objects.filter(pool=pool, user_id=user_id).exists():
            raise NotFound("No such member.")
        pool_member_remove(pool=pool, user_id=user_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PoolInviteCreateApi(APIView):
    """A new invite link for a pool (its manager only); the token goes in /pools/join/<token>/."""

    @extend_schema(request=InviteInputSerializer, responses={201: InviteOutputSerializer})
    def post(self, request: Request, pool_id: int) -> Response:
        pool = _pool(request, pool_id)
        data = InviteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invite = pool_invite_create(pool=pool, created_by=request.user, **data.validated_data)  # type: ignore[arg-type]
        return Response(InviteOutputSerializer(invite).data, status=status.HTTP_201_CREATED)


class PoolInviteRevokeApi(APIView):
    @extend_schema(request=None, responses={200: InviteOutputSerializer})
    def post(self, request: Request, pool_id: int, invite_id: int) -> Response:
        invite = PoolInvite.objects.filter(pool=_pool(request, pool_id), pk=invite_id).first()
        if invite is None:
            raise NotFound("No such invite.")
        return Response(InviteOutputSerializer(pool_invite_revoke(invite=invite)).data)


class PoolJoinApi(APIView):
    """Join a pool with an invite token; 410 (code invite_expired / invite_used_up /
    invite_revoked / invite_unknown) when the link can't be used."""

    @extend_schema(request=None, responses={200: JoinOutputSerializer})
    def post(self, request: Request, token: str) -> Response:
        member = pool_invite_accept(token=token, user=request.user)  # type: ignore[arg-type]
        return Response(JoinOutputSerializer(member).data)


class ProjectPoolListApi(APIView):
    """A project's pools with their rules (GET); link one of the caller's pools (POST)."""

    @extend_schema(responses={200: LinkOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        links = project_pool_list(project=_project(request, project_id))
        return Response(LinkOutputSerializer(links, many=True).data)

    @extend_schema(request=LinkInputSerializer, responses={200: LinkOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = _project(request, project_id)
        data = LinkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            pool = pool_get_for_owner(user=request.user, pool_id=data.validated_data["pool"])  # type: ignore[arg-type]
        except Pool.DoesNotExist:
            raise serializers.ValidationError({"pool": ["Choose one of your pools."]}) from None
        link = project_pool_link(
            project=project, pool=pool, rule=data.validated_data["rule"], actor=request.user
        )
        return Response(LinkOutputSerializer(link).data)


class ProjectPoolUnlinkApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, project_id: int, pool_id: int) -> Response:
        project = _project(request, project_id)
        link = ProjectPool.objects.select_related("pool").filter(project=project, pool_id=pool_id)
        found = link.first()
        if found is None:
            raise NotFound("No such pool on this project.")
        project_pool_unlink(project=project, pool=found.pool, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectRequirementListApi(APIView):
    """A project's requirements (GET) and a new one (POST); owners only."""

    @extend_schema(responses={200: RequirementOutputSerializer(many=True)})
    def get(self, request: Request, project_id: int) -> Response:
        requirements = project_requirement_list(project=_project(request, project_id))
        return Response(RequirementOutputSerializer(requirements, many=True).data)

    @extend_schema(request=RequirementInputSerializer, responses={201: RequirementOutputSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = _project(request, project_id)
        data = RequirementInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        pool_id = fields.pop("pool", None)
        pool = None
        if pool_id is not None:
            link = ProjectPool.objects.select_related("pool").filter(
                project=project, pool_id=pool_id
            )
            pool = found.pool if (found := link.first()) else None
        requirement = project_requirement_add(
            project=project, pool=pool, actor=request.user, **fields
        )
        return Response(
            RequirementOutputSerializer(requirement).data, status=status.HTTP_201_CREATED
        )


class ProjectRequirementRemoveApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, project_id: int, requirement_id: int) -> Response:
        project = _project(request, project_id)
        if not ProjectRequirement.objects.filter(project=project, pk=requirement_id).exists():
            raise NotFound("No such requirement.")
        project_requirement_remove(
            project=project, requirement_id=requirement_id, actor=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
