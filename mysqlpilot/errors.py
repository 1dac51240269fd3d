"""Errors a user can cause. The CLI prints them as one line, without a traceback."""


class PilotError(Exception):
    """An expected failure: bad config, unreachable service, wrong password, corrupt snapshot.

    The message is one line that names the key, host or file and says what to do.
    It must never contain a secret.
    """


class ConfigError(PilotError):
    """Invalid configuration: the message names the key."""


class SnapshotError(PilotError):
    """A snapshot could not be taken, found, or verified."""
