"""Parsing an `[endpoints.<name>]` section: the keys every endpoint has, checked the same way
for every vendor; each vendor adds the checks of its own keys."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from rotate.configparse import build, positive, timeouts, type_ok, url_problem
from rotate.vendors.base import EndpointSettings

E = TypeVar("E", bound=EndpointSettings)

#: what stands in for a missing or mistyped `url`, so the other keys are checked too
_URL_STAND_IN = "http://x"


def parse_endpoint(
    cls: type[E], name: str, table: Mapping[str, Any], errors: list[str], system: str
) -> E | None:
    """`cls` (an EndpointSettings) from the section `[endpoints.<name>]` of a `system`
    endpoint, its common keys checked; every problem appended to `errors`."""
    where = f"endpoints.{name}"
    data = {k: v for k, v in table.items() if k != "system"}
    url_ok = False
    if "url" not in data:
        errors.append(f"{where}: missing required key 'url'")
    elif not type_ok("str", data["url"]):
        value = data["url"]
        errors.append(f"{where}.url: expected str, got {type(value).__name__} {value!r}")
    else:
        url_ok = True
    if not url_ok:
        data["url"] = _URL_STAND_IN
    endpoint: E | None = build(cls, data, where, errors, name=name, system=system)
    if endpoint is None:  # pragma: no cover - the required keys are there, typed
        return None
    if url_ok and (why := url_problem(endpoint.url)):
        errors.append(f"{where}.url: {why}")
    errors.extend(_tls_problems(endpoint, where))
    positive(
        errors,
        where,
        per_endpoint_concurrency=endpoint.per_endpoint_concurrency,
        timeout_s=endpoint.timeout_s,
    )
    timeouts(errors, where, timeout_s=endpoint.timeout_s)
    return endpoint


def _tls_problems(endpoint: EndpointSettings, where: str) -> list[str]:
    problems = []
    for key, value in (("client_cert", endpoint.client_cert), ("client_key", endpoint.client_key)):
        if value is not None and not Path(value).is_file():
            problems.append(f"{where}.{key}: {value!r} is not a file")
    if endpoint.client_key and not endpoint.client_cert:
        problems.append(f"{where}.client_key: given without client_cert")
    if endpoint.insecure and endpoint.ca_bundle:
        problems.append(f"{where}: insecure = true and ca_bundle contradict each other")
    if endpoint.ca_bundle is not None and not Path(endpoint.ca_bundle).is_file():
        # found out only when the first request is made, as a traceback
        problems.append(f"{where}.ca_bundle: {endpoint.ca_bundle!r} is not a file")
    return problems


def settings_of(cls: type[E], settings: EndpointSettings) -> E:
    """`settings` as the vendor's own settings type (its `parse` made them so)."""
    if not isinstance(settings, cls):
        raise TypeError(
            f"endpoint {settings.name!r}: {settings.system} settings, not {cls.__name__}"
        )
    return settings
