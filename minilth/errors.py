"""The errors minilth raises for bad input: each message is one line that says what to do."""
import sys


class MinilthError(Exception):
    """Base class of user-facing errors; the CLIs print their message alone, without a traceback."""


class DataError(MinilthError, ValueError):
    """A data file is missing, malformed or inconsistent with its task."""


class CheckpointError(MinilthError, ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


class DownloadError(MinilthError, OSError):
    """A download failed, was corrupt, or is not possible offline."""


def run_cli(command, interrupted_hint: str = "run the same command again to resume") -> int:
    """Runs a command-line entry point and returns its exit status.

    Bad input (a MinilthError) prints its one-line message and exits 2, never a traceback;
    Ctrl-C says how to resume and exits 130.
    """
    try:
        return command()
    except MinilthError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted_hint}", file=sys.stderr)
        return 130
