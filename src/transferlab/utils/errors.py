"""Errors a user can fix. The entry points print them as one line, without a traceback."""


class TransferlabError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(TransferlabError, ValueError):
    """A config value is invalid or inconsistent."""


class DataError(TransferlabError):
    """A dataset is missing, malformed, or cannot satisfy the requested selection."""


class CheckpointError(TransferlabError):
    """A checkpoint is missing, untrusted, or does not match what the run expects."""


class TrainingError(TransferlabError):
    """Training cannot go on (a non-finite loss)."""
