"""The installed version of hierbayes, read from the package metadata (pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("hierbayes")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
