"""Back ends by name: the built-in authority types, and those other packages add.

A package adds an authority type through the entry point group `rotate.authorities`: the
entry point's name is the `type` a config gives, its value an object satisfying
`rotate.authorities.base.AuthorityType` (for example `mypkg.vault:TYPE`). Built-in names win
over entry points of the same name.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points

from rotate.authorities.base import AuthorityType

log = logging.getLogger(__name__)

AUTHORITY_GROUP = "rotate.authorities"

#: built-in authority types: the `type` of a config section -> "module:attribute"
BUILTIN_AUTHORITIES = {
    "none": "rotate.authorities.none:TYPE",
    "ldap": "rotate.authorities.ldap:LDAP",
    "ad": "rotate.authorities.ldap:AD",
}


def _load(spec: str) -> AuthorityType:
    module, _, attribute = spec.partition(":")
    found: AuthorityType = getattr(importlib.import_module(module), attribute)
    return found


@cache
def _plugins() -> dict[str, str]:
    """Authority types other packages add: name -> "module:attribute"."""
    found = {}
    for ep in entry_points(group=AUTHORITY_GROUP):
        if ep.name in BUILTIN_AUTHORITIES:
            log.warning("entry point %s ignored: %r is a built-in authority type", ep, ep.name)
            continue
        found[ep.name] = ep.value
    return found


def authority_type_names() -> list[str]:
    """Every authority type's name (nothing is imported)."""
    return sorted({*BUILTIN_AUTHORITIES, *_plugins()})


@cache
def authority_type(name: str) -> AuthorityType | None:
    """The authority type called `name` (imported on first use), or None."""
    spec = BUILTIN_AUTHORITIES.get(name) or _plugins().get(name)
    return _load(spec) if spec is not None else None
