"""Celery entry points for building dataset releases."""

from __future__ import annotations
