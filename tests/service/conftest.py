"""Service fixtures: apps built by the real factory over the session index."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from kb.config import Settings
from service.app import create_app

OPEN_LIMIT = 100_000  # requests/minute: high enough that only the rate-limit tests ever meet it


@pytest.fixture(scope="session")
def api_settings(indexed_settings: Settings) -> Settings:
    return replace(indexed_settings, rate_limit_per_minute=OPEN_LIMIT)


@pytest.fixture(scope="session")
def make_client(api_settings: Settings) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with make_client(api_keys=("k",)) as client:`` — a started app with changed settings."""

    @contextmanager
    def build(**overrides: object) -> Iterator[TestClient]:
        settings = replace(api_settings, **overrides)  # type: ignore[arg-type]
        with TestClient(create_app(settings)) as client:
            yield client

    return build


@pytest.fixture(scope="module")
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as client:
        yield client
