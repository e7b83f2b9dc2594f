"""An unexpected exception: one line on the console, the full trace in a file scrubbed of
secrets, and an exit code of its own (`EXIT_CRASH`), never a traceback on the terminal."""

from __future__ import annotations

import os
import re
import tempfile
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

#: environment variables whose values are secrets, by name (tokens, passwords, keys)
_SECRET_NAME = re.compile(r"TOKEN|PASS|PWD|SECRET|BIND|KEY|CREDENTIAL|ROLE_ID", re.IGNORECASE)
#: a URL's query string or user info: Spark View carries passwords there
_URL_SECRETS = (
    (re.compile(r"(https?://[^\s'\"?#]*)\?[^\s'\"#]*"), r"\1?***"),
    (re.compile(r"(\w+://)[^\s/@'\"]+@"), r"\1***@"),
)


def secret_values(env: Mapping[str, str], named: Iterable[str] = ()) -> list[str]:
    """The values to scrub: every environment variable named like a secret, and those the
    config names (token_env, gateway_password_env, bind_password_env, ...)."""
    names = {n for n in env if _SECRET_NAME.search(n)} | set(named)
    return [env[n] for n in names if len(env.get(n, "")) >= 4]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value and every URL query string or user info masked."""
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, "***")
    for pattern, masked in _URL_SECRETS:
        text = pattern.sub(masked, text)
    return text


def write_crash_report(exc: BaseException, directory: Path | None, secrets: Iterable[str]) -> Path:
    """The scrubbed trace of `exc` in `<directory>/crash-<time>-<pid>.txt` (the system's temp
    directory when that one cannot be written), readable by its owner only."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = scrub("".join(traceback.format_exception(exc)), secrets)
    for place in (directory, Path(tempfile.gettempdir())):
        if place is None:
            continue
        path = place / f"crash-{stamp}-{os.getpid()}.txt"
        try:
            place.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError:
            continue
        return path
    raise OSError("no place to write the crash report")
