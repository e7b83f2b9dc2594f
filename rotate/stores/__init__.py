"""Secret stores: where candidates are staged and accepted passwords are promoted."""

from rotate.stores.base import SecretStore

__all__ = ["SecretStore"]
