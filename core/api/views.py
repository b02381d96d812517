"""API endpoints that belong to no domain app: tokens and user accounts."""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from core.exceptions import ApplicationError


class AuthTokenApi(APIView):
    """Exchange a username and password for an API token."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None or not user.is_active:
            raise ApplicationError("Wrong username or password.", code="authentication_failed")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class UserCreateApi(APIView):
    """Create a user account (staff only), so scripts can set up projects and workers."""

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        username = serializers.RegexField(r"^[\w.@+-]{1,150}$")
        password = serializers.CharField(trim_whitespace=False, write_only=True)
        email = serializers.EmailField(required=False, allow_blank=True)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        # A CharField, not an EmailField: the address is optional, and "" is not an email.
        email = serializers.CharField(help_text="The address given, or empty when none was.")

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user_model = get_user_model()
        username = data.validated_data["username"]
        if user_model.objects.filter(username=username).exists():
            raise ApplicationError(
                "That username is taken.", fields={"username": ["That username is taken."]}
            )
        try:
            validate_password(data.validated_data["password"])
        except ValidationError as exc:
            raise ApplicationError(
                "The password is too weak.", fields={"password": exc.messages}
            ) from None
        user = user_model.objects.create_user(
            username=username,
            password=data.validated_data["password"],
            email=data.validated_data.get("email", ""),
        )
        return Response(self.OutputSerializer(user).data, status=status.HTTP_201_CREATED)
