"""OpenAPI generation: component names that stay unique with nested per-view serializers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    """Name `SomeApi.InputSerializer` components "SomeApiInput", not a shared "Input"."""

    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        return type(serializer).__qualname__.replace(".", "")
