"""OpenAPI generation: unique component names and the error answers every endpoint can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import permissions, serializers


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API (core.api.exception_handler)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    fields = serializers.DictField(child=serializers.JSONField())


ERROR_DESCRIPTIONS = {
    "400": "Invalid input, or a rule of the domain refused the request.",
    "401": "No or invalid credentials.",
    "403": "Not allowed for this user.",
    "404": "No such object, or not visible to this user.",
    "409": "Conflicts with the current state.",
    "415": "The request body's media type is not accepted.",
    "429": "Too many requests.",
}


class AutoSchema(SpectacularAutoSchema):
    """Name `SomeApi.InputSerializer` components "SomeApiInput", not a shared "Input".

    Every operation also documents the error answers it can give, in the API's error shape:
    400 and 409 (input and domain errors), 401 and 403 unless anyone may call it, 404 when its
    path names an object or it pages (an invalid page), 415 when it takes a body, 429 when it
    is throttled. An error answer a view documents with a description only gets the error
    shape too, so clients (and the API fuzz) know what its body holds.
    """

    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        return type(serializer).__qualname__.replace(".", "")

    def _error_codes(self) -> list[str]:
        codes = ["400", "409"]
        view_permissions = getattr(self.view, "permission_classes", ())
        if not all(cls is permissions.AllowAny for cls in view_permissions):
            codes += ["401", "403"]
        paginated = getattr(self.view, "pagination_class", None) is not None
        if "{" in self.path or (self.method == "GET" and paginated):
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("415")
        if getattr(self.view, "throttle_classes", ()):
            codes.append("429")
        return codes

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, response in responses.items():
            if str(code) in ERROR_DESCRIPTIONS and "content" not in response:
                response["content"] = self._get_response_for_code(ErrorSerializer, str(code))[
                    "content"
                ]
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code)
                responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        return responses
