"""The checks of the course's labs, in a student's notebook: each runs the exercise's check on your function and
prints one line, PASS or FAIL and what differs.

    from minilth.course import check
    check.magnitude_prune(magnitude_prune)  # PASS magnitude_prune: matches minilth's (or FAIL: what differs)

A wrong answer, an unfinished exercise or an exception in your code is one line, never a traceback. While your
function runs, minilth's own function for the step refuses to run: an exercise answered by calling it fails, saying
so. These checks are feedback for the student; a grade comes from `python -m minilth.grade`, which runs the same
check with your code in a process apart (isolation.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from .exercise import refused, run_calls, verdict
from .exercises import EXERCISES


@dataclass
class Result:
    """One check of one exercise: passed or not, and the line that says why."""

    exercise: str
    passed: bool
    message: str


def run(name: str, function, seed: int = 0) -> Result:
    """Returns the check's Result for `function` as the exercise `name` (and prints its line)."""
    exercise = EXERCISES[name]
    calls = exercise.calls(seed)
    with refused(exercise):
        outcomes = run_calls(exercise, function, calls)
    message = verdict(exercise, seed, outcomes)
    result = Result(name, message is None, message or "matches minilth's")
    print(f"{'PASS' if result.passed else 'FAIL'} {name}: {result.message}")
    return result


def __getattr__(name: str):
    """check.<exercise>(function) -> Result, one for every exercise of the labs (EXERCISES)."""
    if name not in EXERCISES:
        raise AttributeError(f"minilth.course.check has no check '{name}'; the exercises: {', '.join(EXERCISES)}")
    return lambda function: run(name, function)


def __dir__() -> list[str]:
    return sorted([*globals(), *EXERCISES])
