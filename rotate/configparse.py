"""Parsing helpers every config section uses: typed tables, bounds, URLs, secret keys.

Each section of the config file (rotate/settings.py for [vault], [run] and [policies]; each
back end for its own) is parsed with these, so every problem in the file is reported at
once and in the same words.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: keys that would put a secret in the config file, refused in every section
FORBIDDEN_SECRET_KEYS = frozenset(
    {"token", "password", "secret_id", "gateway_password", "bind_password", "private_key", "key"}
)
# a longer socket timeout overflows the platform's time_t (a traceback instead of a message)
MAX_TIMEOUT_S = 86_400.0


def build(
    cls: type[Any], data: Mapping[str, Any], where: str, errors: list[str], **fixed: Any
) -> Any:
    """Build a settings dataclass from a TOML table, checking names and types."""
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = dict(fixed)
    for key, value in data.items():
        if key in FORBIDDEN_SECRET_KEYS:
            errors.append(
                f"{where}.{key}: secrets never live in the config file; "
                "use the environment (see README)"
            )
            continue
        f = known.get(key)
        if f is None or key in fixed or key in ("env", "source"):
            errors.append(f"{where}: unknown key {key!r}")
            continue
        expected = f.type if isinstance(f.type, str) else str(f.type)
        ok = type_ok(expected, value)
        if not ok:
            errors.append(
                f"{where}.{key}: expected {expected}, got {type(value).__name__} {value!r}"
            )
            continue
        if expected.startswith("float") and not math.isfinite(value):
            errors.append(f"{where}.{key}: must be a finite number, got {value!r}")
            continue
        if expected.startswith("float"):
            value = float(value)
        elif expected.startswith("tuple"):
            value = tuple(v.lower() for v in value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # pragma: no cover - guarded by the checks above
        errors.append(f"{where}: {exc}")
        return None


def type_ok(expected: str, value: Any) -> bool:
    optional = "None" in expected
    base = expected.split("|")[0].strip()
    if value is None:
        return optional
    if base == "bool":
        return isinstance(value, bool)
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base == "str":
        return isinstance(value, str)
    if base == "tuple[str, ...]":
        return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    return False


def positive(errors: list[str], where: str, **values: float | int | None) -> None:
    for key, value in values.items():
        if value is not None and value <= 0:
            errors.append(f"{where}.{key}: must be greater than 0, got {value}")


def not_negative(errors: list[str], where: str, **values: float | int) -> None:
    for key, value in values.items():
        if value < 0:
            errors.append(f"{where}.{key}: must be 0 or more, got {value}")


def timeouts(errors: list[str], where: str, **values: float | None) -> None:
    for key, value in values.items():
        if value is not None and value > MAX_TIMEOUT_S:
            errors.append(f"{where}.{key}: must be at most {MAX_TIMEOUT_S:g} s, got {value:g}")


def url_problem(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """What makes `url` unusable as a base URL of one of `schemes`, or None; a password is
    never echoed."""
    shown = "the URL" if "@" in url else repr(url)
    if not url.lower().startswith(tuple(f"{s}://" for s in schemes)):
        named = (
            "http(s)" if schemes == ("http", "https") else " or ".join(f"{s}://" for s in schemes)
        )
        return f"{shown} is not an {named} URL"
    if any(c.isspace() or not c.isprintable() for c in url):
        return f"{shown} contains a space or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError unless a number from 0 to 65535
    except ValueError:
        return f"{shown} has an invalid host or port"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password: secrets never live in the config file"
    if not parts.hostname:
        return f"{shown} has no host"
    if port == 0:
        return f"{shown} has an invalid host or port"
    return None


def unreadable(path: str) -> str | None:
    """Why a file named in the config cannot be read (None when it can), without reading it."""
    try:
        p = Path(path).expanduser()
        if not p.is_file():
            return "is not a file" if p.exists() else "does not exist"
    except (OSError, ValueError) as exc:  # a NUL in the path, say
        return f"cannot be used: {exc}"
    return None if os.access(p, os.R_OK) else "is not readable by this user"
