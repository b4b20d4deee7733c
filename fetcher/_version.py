"""The version, in one place (the User-Agent and --version read it)."""

__version__ = "0.1.0"
