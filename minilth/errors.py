"""The errors minilth raises for bad input: each message is one line that says what to do."""
import os
import sys
import time

# Under torchrun every rank fails alike, and torchrun stops the others as soon as one exits: the
# ranks that do not print wait this long first, so that rank 0's line is out before it is stopped.
OTHER_RANKS_WAIT_S = 3.0


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
    the failed processes and exits 1, which the processes cannot change.
    """
    try:
        return command()
    except MinilthError as error:
        return report_once(f"error: {error}", 2)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return report_once(f"error: cannot use {where}{error.strerror or error}; check the path and its permissions",
                           2)
    except KeyboardInterrupt:
        return report_once(f"interrupted: {interrupted_hint}", 130)


def report_once(message: str, status: int) -> int:
    """Prints the message on stderr, under torchrun on rank 0 alone (every rank fails alike); returns `status`."""
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr)
    else:
        time.sleep(OTHER_RANKS_WAIT_S)
    return status
