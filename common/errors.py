"""Errors a user can fix: the CLI prints them as one line and exits non-zero.

Anything else that escapes is a bug, and the CLI says so (traceback with `--debug`).
"""


class DeepsuiteError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class ConfigError(DeepsuiteError):
    """A config key or value that is not allowed."""


class DataError(DeepsuiteError):
    """A dataset source that is missing, unreadable or malformed."""
