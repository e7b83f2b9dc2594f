"""rotate: rotate the stored passwords of remote-access systems in bulk, never losing one."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rotate")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["__version__"]
