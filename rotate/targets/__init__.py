"""Targets: one adapter per vendor API, built from the endpoint settings."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from rotate.models import Secret, System
from rotate.settings import EndpointSettings, RunSettings
from rotate.targets.base import Target
from rotate.targets.http import Endpoint, Redactor, RetryPolicy, make_client, redact_url
from rotate.targets.remotix import RemotixTarget
from rotate.targets.sparkview import SparkViewTarget

__all__ = ["Target", "build_target", "redact_url"]


def build_target(
    endpoint: EndpointSettings,
    run: RunSettings,
    env: Mapping[str, str],
    gateway_password: Secret | None = None,
    client: httpx.AsyncClient | None = None,
) -> Target:
    """The adapter for one endpoint; `client` lets a test hand in its own transport."""
    limit = endpoint.per_endpoint_concurrency or run.per_endpoint_concurrency
    headers: dict[str, str] = {}
    redactor = Redactor()
    if endpoint.system is System.REMOTIX:
        token = endpoint.bearer_token(env)
        if token is not None:
            headers["Authorization"] = f"Bearer {token.reveal()}"
            redactor.add(token)
    http = Endpoint(
        endpoint.name,
        client or make_client(endpoint, run),
        limit,
        RetryPolicy.from_settings(run),
        redactor,
        headers,
    )
    if endpoint.system is System.REMOTIX:
        return RemotixTarget(endpoint, http)
    if gateway_password is None:
        raise ValueError(
            f"endpoint {endpoint.name}: a Spark View target needs its gateway password"
        )
    return SparkViewTarget(endpoint, http, gateway_password)
