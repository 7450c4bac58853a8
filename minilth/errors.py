"""The errors minilth raises for bad input: each message is one line that says what to do."""


class MinilthError(Exception):
    """Base class of user-facing errors; the CLIs print their message alone, without a traceback."""


class DataError(MinilthError, ValueError):
    """A data file is missing, malformed or inconsistent with its task."""


class CheckpointError(MinilthError, ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


class DownloadError(MinilthError, OSError):
    """A download failed, was corrupt, or is not possible offline."""
