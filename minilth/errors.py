"""The errors minilth raises for bad input: each message is one line that says what to do."""
import os
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

    Bad input (a MinilthError) prints its one-line message and exits 2, never a traceback; so does a
    file that cannot be read or written (an OSError, named with its path). Ctrl-C says how to
    resume and exits 130. Under torchrun only rank 0 prints; torchrun then adds its own report of
    the failed processes, which the processes cannot turn off.
    """
    try:
        return command()
    except MinilthError as error:
        return _fail(f"error: {error}", 2)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"error: cannot use {where}{error.strerror or error}; check the path and its permissions", 2)
    except KeyboardInterrupt:
        return _fail(f"interrupted: {interrupted_hint}", 130)


def _fail(message: str, status: int) -> int:
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: one line is enough
        print(message, file=sys.stderr)
    return status
