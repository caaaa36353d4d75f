"""The library's version, read by the build (pyproject.toml) and written into every file."""

__version__ = "0.1.0"
