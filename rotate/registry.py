"""Back ends by name: the built-in authority types and vendors, and those other packages add.

A package adds an authority type through the entry point group `rotate.authorities`, and a
vendor through `rotate.vendors`: the entry point's name is the `type` (authorities) or the
`system` (endpoints) a config gives, its value an object satisfying
`rotate.authorities.base.AuthorityType` or `rotate.vendors.base.VendorType` (for example
`mypkg.vault:TYPE`). Built-in names win over entry points of the same name. Nothing is imported
until it is asked for by name (or, for the inventory's kinds, until a kind is looked up).

Kind names are unique across vendors: an inventory row's kind is checked against its
endpoint's vendor, and the reports and simulators find a row's vendor by its kind (the
built-ins first, then the others by name; a later vendor's clashing kind is ignored there).
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from rotate.authorities.base import AuthorityType
from rotate.errors import ConfigError
from rotate.vendors.base import EndpointSettings, KindSpec, VendorType

log = logging.getLogger(__name__)

AUTHORITY_GROUP = "rotate.authorities"
VENDOR_GROUP = "rotate.vendors"

#: built-in authority types: the `type` of a config section -> "module:attribute"
BUILTIN_AUTHORITIES = {
    "none": "rotate.authorities.none:TYPE",
    "ldap": "rotate.authorities.ldap:LDAP",
    "ad": "rotate.authorities.ldap:AD",
    "ssh": "rotate.authorities.ssh:SSH",
    "vault-ldap": "rotate.authorities.vault_ldap:VAULT_LDAP",
}

#: built-in vendors: the `system` of an endpoint -> "module:attribute"
BUILTIN_VENDORS = {
    "remotix": "rotate.vendors.remotix:VENDOR",
    "sparkview": "rotate.vendors.sparkview:VENDOR",
}

_BUILTINS = {AUTHORITY_GROUP: BUILTIN_AUTHORITIES, VENDOR_GROUP: BUILTIN_VENDORS}


def _load(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


@cache
def _plugins(group: str) -> dict[str, str]:
    """What other packages add to an entry point group: name -> "module:attribute"."""
    builtins = _BUILTINS[group]
    found = {}
    for ep in entry_points(group=group):
        if ep.name in builtins:
            log.warning("entry point %s ignored: %r is a built-in of %s", ep, ep.name, group)
            continue
        found[ep.name] = ep.value
    return found


def _spec(group: str, name: str) -> str | None:
    return _BUILTINS[group].get(name) or _plugins(group).get(name)


def forget() -> None:
    """Forget what was found and loaded (entry points added while the process runs)."""
    for cached in (_plugins, authority_type, vendor_type, _kinds):
        cached.cache_clear()


# -- authorities ------------------------------------------------------------------------------


def authority_type_names() -> list[str]:
    """Every authority type's name (nothing is imported)."""
    return sorted({*BUILTIN_AUTHORITIES, *_plugins(AUTHORITY_GROUP)})


@cache
def authority_type(name: str) -> AuthorityType | None:
    """The authority type called `name` (imported on first use), or None."""
    spec = _spec(AUTHORITY_GROUP, name)
    found: AuthorityType | None = _load(spec) if spec is not None else None
    return found


# -- vendors ----------------------------------------------------------------------------------


def vendor_names() -> list[str]:
    """Every vendor's name, the built-ins first (nothing is imported)."""
    plugins = sorted(set(_plugins(VENDOR_GROUP)) - set(BUILTIN_VENDORS))
    return [*BUILTIN_VENDORS, *plugins]


@cache
def vendor_type(name: str) -> VendorType | None:
    """The vendor called `name` (imported on first use), or None."""
    spec = _spec(VENDOR_GROUP, name)
    found: VendorType | None = _load(spec) if spec is not None else None
    return found


def vendor_of(endpoint: EndpointSettings) -> VendorType:
    """The vendor of an endpoint of loaded settings (its `system` was checked then)."""
    found = vendor_type(endpoint.system)
    if found is None:  # pragma: no cover - load_settings checked the system
        raise ConfigError(f"endpoints.{endpoint.name}: unknown system {endpoint.system!r}")
    return found


@cache
def _kinds() -> dict[str, tuple[VendorType, KindSpec]]:
    found: dict[str, tuple[VendorType, KindSpec]] = {}
    for name in vendor_names():
        vendor = vendor_type(name)
        if vendor is None:  # pragma: no cover - every listed name has a spec
            continue
        for kind in vendor.kinds.values():
            owner = found.setdefault(kind.name, (vendor, kind))[0]
            if owner is not vendor:
                log.warning("vendor %s: kind %r is %s's already", name, kind.name, owner.name)
    return found


def kind_names() -> list[str]:
    """Every vendor's kinds (every vendor is imported)."""
    return list(_kinds())


def kind_spec(kind: str) -> KindSpec | None:
    """The kind called `kind`, of whichever vendor serves it, or None."""
    found = _kinds().get(kind)
    return found[1] if found is not None else None


def vendor_of_kind(kind: str) -> VendorType | None:
    """The vendor whose endpoints serve `kind`, or None."""
    found = _kinds().get(kind)
    return found[0] if found is not None else None


def system_of_kind(kind: str) -> str:
    """The name of the vendor serving `kind` ("" when none does)."""
    vendor = vendor_of_kind(kind)
    return vendor.name if vendor is not None else ""
