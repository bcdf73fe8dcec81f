"""Shared fixtures: accounts with known keys, an API client, a clean cache per test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache

from directcall.models import Account

TESTS_DIR = Path(__file__).resolve().parent


def _clear_cache() -> None:
    """Empty this run's part of the cache (never another run's keys in a shared Redis)."""
    if cache.__class__.__name__ == "RedisCache":
        client = cache._cache.get_client(write=True)
        keys = list(client.scan_iter(match=f"{settings.RUN_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def clean_cache():
    """Throttle counters and presence start empty in every test."""
    _clear_cache()
    yield
    _clear_cache()


@pytest.fixture
def validation_cases() -> dict[str, Any]:
    """The shared valid/invalid parameter cases (also read by the browser SDK's tests)."""
    return json.loads((TESTS_DIR / "validation_cases.json").read_text())


@pytest.fixture
def make_account(db) -> Callable[..., tuple[Account, str]]:
    """Factory: ``make_account(**fields) -> (account, api_key)``."""

    def make(**fields: Any) -> tuple[Account, str]:
        fields.setdefault("name", "Test account")
        fields.setdefault("require_clevertap", False)
        account = Account(**fields)
        key = account.set_new_api_key()
        account.save()
        return account, key

    return make


@pytest.fixture
def api_client():
    """A DRF test client."""
    from rest_framework.test import APIClient

    return APIClient()
