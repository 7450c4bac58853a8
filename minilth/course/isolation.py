"""Grading that a student's code cannot forge: each exercise runs in a process of its own, the verdict in the grader's.

What runs where
    The grader (`python -m minilth.grade`) reads a student's notebook and, for each exercise of the lab, draws a fresh
    seed and sends the exercise's name, the seed and the source of the notebook's setup cells and of the cell that
    defines the exercise's function to a process of its own (`Sandbox.run`): a fork of a helper that imported torch
    and minilth once. That process draws the exercise's inputs from the seed, calls the student's function on them
    and sends back only data: what each call returned (tensors, numbers, strings, lists, dicts) or the error it
    raised. The grader reads it with torch.load(weights_only=True), which builds data and runs no code; it then draws
    the same inputs again, computes minilth's answers and compares (exercise.verdict). The expected values, the
    comparison and the report exist only in the grader's process.

What the grader guarantees
    - Nothing the student's code does reaches the verdict but the values its function returns: patching
      minilth.course, torch or anything else changes only its own process; printing PASS prints to nowhere;
      exiting, crashing or being killed fails that one exercise, and the rest of the notebook is still graded.
    - The exercises are the grader's list (exercises.LABS), not the notebook's: a deleted or renamed exercise or
      check cell fails that exercise.
    - The inputs are drawn afresh at every grading: answers learnt by heart, or taken from another run, do not fit.
    - minilth's own functions for the step (each exercise's `library`) refuse to run in the student's process: their
      code is replaced, in the function objects themselves, before any of the student's code runs, so an import,
      a wrapper or another module's name for them all reach the refusal, and the exercise fails saying so. The code
      cannot be put back (setting a function's __code__ is refused) nor loaded afresh (minilth's files cannot be
      opened); the teacher's solutions (solutions.py) are never imported there and cannot be opened either.
    - Once the student's code may run, its process may not open a file for writing, nor open any file outside
      Python's own installation (minilth's files, the teacher's, other notebooks, the report, /proc); nor start a
      process, send a signal, load native code through ctypes, open a socket or raise its own limits (`_guard`).
    - Each exercise is stopped at a time limit and a memory limit (`Limits`), and fails saying which.

What it does not guarantee
    - That the student wrote the code: code copied by hand (from minilth's source, a classmate, the web) is graded
      on what it does, as any code is.
    - Against escapes below Python: the refusals are CPython's audit hooks (PEP 578), which native code can step
      around; torch.from_file, for one, reads a file without Python's open. For an exam, run the grader as a user
      who cannot read the students' other files, or in a container.
    - Grading on Windows: the exercises' processes are forks. It is tested on Linux.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import pkgutil
import select
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MinilthError
from ..settings import check, flag, setting
from .exercise import one_line, refuse, run_calls, tiny_model

SOLUTIONS = "minilth.course.solutions"  # never imported by the helper, so a student's process cannot reach it
STARTUP_SECONDS = 300  # for the helper to import torch and minilth on a slow, busy machine
MAX_RESULTS_BYTES = 64 * 2**20
# What a student's process may not do once its code may run (Python's audit events; see _guard).
REFUSED_EVENTS = {"os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn", "os.system", "subprocess.Popen",
                  "os.startfile", "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit",
                  "resource.prlimit", "os.chmod", "os.chown", "os.link", "os.mkdir", "os.remove", "os.rename",
                  "os.rmdir", "os.symlink", "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "os.fwalk"}
REFUSED_PREFIXES = ("ctypes.", "socket.")
REFUSED_IMPORTS = {"_posixsubprocess", "_ctypes", "_cffi_backend"}  # process starts and native code without events
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass(kw_only=True)
class Limits:
    """limits on each exercise"""

    time_limit: float = setting(30.0, "seconds an exercise's process may run (the student's cells and the check's "
                                      "calls)")
    memory_limit: float = setting(4.0, "GB of memory an exercise's process may hold")

    def __post_init__(self):
        for name in ("time_limit", "memory_limit"):
            value = getattr(self, name)
            check(isinstance(value, (int, float)) and 0 < value < math.inf,
                  f"{flag(name)} must be a positive number, got {value}")


# --- the grader's side --------------------------------------------------------------------------------------------


class Sandbox:
    """The helper process, started once per grading: it imports torch and minilth, then forks one process per
    exercise, which takes milliseconds where starting Python and importing torch takes seconds."""

    def __init__(self, limits: Limits):
        if not hasattr(os, "fork"):
            raise MinilthError("grading runs each exercise in a fork of a process, which Windows cannot make: grade "
                               "on Linux (or in WSL)")
        self.limits, self.folder, self.helper, self.buffer, self.jobs = limits, tempfile.mkdtemp(), None, b"", 0

    def run(self, exercise: str, cells: list[tuple[int, str]], seed: int):
        """Returns what the exercise's process sent back: {"outcomes": [...]}, {"cell": [index, the error it raised]}
        or {"undefined": what it found}; or the line saying why it sent nothing (a limit, an exit)."""
        if self.helper is None or self.helper.poll() is not None:
            self._start()
        self.jobs += 1
        results = Path(self.folder) / f"results_{self.jobs}.pt"
        job = {"exercise": exercise, "cells": cells, "seed": seed, "results": str(results),
               "memory": int(self.limits.memory_limit * 2**30)}
        try:
            self.helper.stdin.write((json.dumps(job) + "\n").encode())
            self.helper.stdin.flush()
            started = self._line(STARTUP_SECONDS)
            if started is None:
                raise EOFError
            pid = int(started.removeprefix("started "))
            ended = self._line(self.limits.time_limit)
            if ended is None:
                _kill(pid)
                self._line(STARTUP_SECONDS)  # "ended -9"
                return (f"stopped after the time limit of {self.limits.time_limit:g} s ({flag('time_limit')}): does "
                        f"it loop forever?")
            return self._results(results, int(ended.removeprefix("ended ")))
        except (EOFError, OSError, ValueError):  # the helper died, or spoke nonsense: the next exercise starts another
            self.close()
            return "the grader's helper process died during this exercise"
        finally:
            results.unlink(missing_ok=True)

    def _start(self) -> None:
        self.close()
        with open(Path(self.folder) / "helper.log", "wb") as log:
            self.helper = subprocess.Popen([sys.executable, "-c", f"from {__name__} import serve; serve()"],
                                           stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=log, cwd=self.folder, start_new_session=True)
        self.buffer, ready = b"", ""
        try:
            while ready not in ("ready", None):  # anything a module printed on import comes first
                ready = self._line(STARTUP_SECONDS)
        except EOFError:
            ready = None
        if ready != "ready":
            log = (Path(self.folder) / "helper.log").read_text(errors="replace").strip().splitlines()
            raise MinilthError(f"the grader's helper process did not start ({log[-1] if log else 'no message'}); "
                               f"check that `python -c 'import minilth.course.isolation'` works")

    def _line(self, seconds: float) -> str | None:
        """Returns the helper's next line, None after `seconds` without one; raises EOFError when it is gone."""
        deadline, fd = time.monotonic() + seconds, self.helper.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def _results(self, path: Path, status: int):
        """Returns what an exercise's process sent back, read as data only, or the line saying why there is none."""
        size = path.stat().st_size if path.exists() else 0
        if status < 0:
            name = signal.Signals(-status).name if -status in signal.valid_signals() else f"signal {-status}"
            return f"its process was killed by {name}" + (" (out of memory?)" if -status == signal.SIGKILL else "")
        if status != 0 or size == 0:
            return f"its process ended before answering (exit status {status}): an exercise must return, not exit"
        if size > MAX_RESULTS_BYTES:
            return f"it sent back {size / 2**20:.0f} MB, more than the {MAX_RESULTS_BYTES // 2**20} MB a check reads"
        try:
            sent = torch.load(path, weights_only=True)  # data only: never runs code from the student's process
        except Exception as error:
            return f"it sent back something other than data ({one_line(error)[:80]})"
        if not (isinstance(sent, dict) and len(sent) == 1):
            return "it sent back something other than its results"
        kind, value = next(iter(sent.items()))
        said = value if isinstance(value, str) else json.dumps(value, default=str)
        if "can't allocate memory" in said or "MemoryError" in said:
            return (f"stopped at the memory limit of {self.limits.memory_limit:g} GB ({flag('memory_limit')}): does "
                    f"it allocate without end?")
        if kind == "crashed" and isinstance(value, str):
            return f"its process failed ({value}): an exercise must return, not exit"
        return sent

    def close(self) -> None:
        """Stops the helper and every exercise's process it started."""
        if self.helper is not None:
            _kill(-self.helper.pid)  # its process group: the helper and its forks
            self.helper.wait()
            self.helper = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL) if pid > 0 else os.killpg(-pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


# --- the helper, and the exercise's process (the student's code runs there) --------------------------------------


def serve() -> None:
    """The helper process: imports what the exercises need once, then runs each job read from stdin in a fork of
    itself, saying "started PID", then "ended STATUS"."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a thread pool started here would hang in the forks: they start their own
    import minilth
    for module in pkgutil.walk_packages(minilth.__path__, "minilth."):  # all of minilth but the teacher's solutions
        if module.name != SOLUTIONS:
            importlib.import_module(module.name)
    _warm_up()
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            torch.set_num_threads(threads)
            _exercise_process(job)
        print(f"started {pid}", flush=True)
        print(f"ended {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}", flush=True)


def _warm_up() -> None:
    """Runs once in the helper what torch loads on first use (torch._dynamo for AdamW, the autograd engine), so that
    each fork does not load it again: every exercise's inputs, and a training step of a tiny model."""
    from .exercises import EXERCISES
    for exercise in EXERCISES.values():
        exercise.calls(0)
    model = tiny_model(0)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4, dtype=torch.long), labels=torch.zeros(2, dtype=torch.long)).loss.backward()
    optimizer.step()


def _exercise_process(job: dict) -> None:
    """Runs one exercise in this fork: the inputs, the refusals and the guard first, then the student's cells and
    the calls; writes what came back to the job's results file and exits."""
    import resource  # POSIX only, as fork is
    status = 1
    try:
        results = open(job["results"], "wb")  # the one file this process writes, opened before the student's code
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # the student's prints go nowhere, and the helper's pipes are out of reach
            os.dup2(devnull, fd)
        resource.setrlimit(resource.RLIMIT_DATA, (job["memory"], job["memory"]))
        from .exercises import EXERCISES
        exercise = EXERCISES[job["exercise"]]
        calls = exercise.calls(job["seed"])
        refuse(exercise)
        _lock_down()
        try:
            sent = _student_outcomes(exercise, job["cells"], calls)
        except BaseException as error:  # SystemExit, KeyboardInterrupt, MemoryError outside a call
            sent = {"crashed": one_line(error)}
        torch.save(sent, results)
        results.close()
        status = 0
    finally:
        os._exit(status)


def _student_outcomes(exercise, cells: list[tuple[int, str]], calls: list[tuple]) -> dict:
    namespace = {"__name__": "__main__"}
    for index, source in cells:
        try:
            exec(compile(source, f"<cell {index}>", "exec"), namespace)
        except Exception as error:
            return {"cell": [index, one_line(error)]}
    function = namespace.get(exercise.name)
    if not callable(function):
        return {"undefined": type(function).__name__}
    return {"outcomes": run_calls(exercise, function, calls)}


def _lock_down() -> None:
    """From here on this process is the student's: the guard refuses what could reach beyond it (see the docstring)."""
    sys.modules.pop("_posixsubprocess", None)  # it starts processes without an audit event: out of reach
    subprocess.__dict__.pop("_fork_exec", None)
    paths = sysconfig.get_paths()
    python = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    python |= {*site.getsitepackages(), site.getusersitepackages()}
    import minilth
    readable = tuple(os.path.realpath(folder) + os.sep for folder in python)
    sys.addaudithook(_guard(readable, os.path.realpath(os.path.dirname(minilth.__file__)) + os.sep))


def _guard(readable: tuple[str, ...], minilths: str):
    """Returns the audit hook of an exercise's process. Once added it cannot be removed, and it keeps no state to
    change: it refuses, for the rest of the process, every event that could reach beyond the process."""
    def guard(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):  # a file already open: the results, /dev/null
                return
            writes = any(c in (mode or "") for c in "wax+") or bool(isinstance(flags, int) and flags & WRITES)
            real = os.path.realpath(os.fsdecode(path))
            # a folder is refused too: opened, it could anchor a path relative to it (dir_fd) that this guard, which
            # sees the path only, would read relative to the working folder
            if writes or real.startswith(minilths) or not real.startswith(readable) or os.path.isdir(real):
                raise PermissionError(f"an exercise may only read Python's own files, not {os.fsdecode(path)}")
        elif (event in REFUSED_EVENTS or event.startswith(REFUSED_PREFIXES)
              or (event == "object.__setattr__" and args[1] == "__code__")
              or (event == "import" and args[0] in REFUSED_IMPORTS)):
            raise PermissionError(f"an exercise may not {event}")
    return guard

