"""Property-based: whatever schemathesis generates from /openapi.json, the service never answers 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from kb.config import Settings
from service.app import create_app

# The schema does not depend on settings or the index, so it is read from an app that is never started;
# requests go to a started app over the session index. (`schemathesis.pytest.from_fixture` would be the
# natural loader, but schemathesis 4.32 reads `Function._nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@pytest.fixture(scope="module")
def app(api_settings: Settings) -> Iterator[FastAPI]:
    app = create_app(api_settings)
    yield app
    schemathesis.python.asgi.shutdown_lifespans()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, app: FastAPI) -> None:
    response = case.call(app=app)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    content_type = " ".join(response.headers.get("content-type", []))  # schemathesis keeps header value lists
    if response.status_code >= 400 and content_type.startswith("application/json"):
        assert set(response.json()["error"]) == {"code", "message"}
