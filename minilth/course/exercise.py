"""An exercise of the course, checked the same way in a student's notebook and by the grader.

An exercise (`Exercise`) is the calls its check makes (the arguments, drawn from a seed), what it reads back from
each call (`observe`: what the function returned, or the model it changed in place), the judge that compares those
readings with minilth's own answer and says in one line what differs, and the library functions that would answer
it (`library`), which refuse to run while the student's function runs:

    outcomes = run_calls(exercise, function, exercise.calls(seed))  # where the student's code runs
    message = verdict(exercise, seed, outcomes)                      # None when right, else what differs

In a notebook both halves run in the student's kernel (check.py), for feedback. Under the grader the first runs in
a process of its own and the second in the grader's (isolation.py), which the student's code never reaches.
An outcome is data only: {"returned": tensors, numbers, strings, lists, dicts} or {"raised": "ValueError: ..."}.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model import BertConfig, build_model
from ..prune import Mask, MaskError

NOT_WRITTEN = "not written yet: replace `raise NotImplementedError` with your code"
REFUSAL = "minilth's own {} is refused in this exercise"  # what minilth's function for the step raises
REFUSED = re.compile(REFUSAL.format(r"(\S+)"))
# A tiny BERT: every check runs in milliseconds on it.
TINY = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
            max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


class Fail(Exception):
    """A check's verdict that the function is wrong: the one line that says what differs."""


def _returned(args: tuple, returned):
    return returned


@dataclass(frozen=True)
class Exercise:
    """One exercise: its calls, what is read back from each, its judge, and minilth's own functions for the step."""

    name: str
    calls: Callable[[int], list[tuple]]  # seed -> the arguments of each call, in order
    judge: Callable[[list[tuple], list[dict]], None]  # (fresh calls, outcomes) -> None when right, else raises Fail
    library: tuple[str, ...] = ()  # "minilth.prune.magnitude_prune": refused while the student's function runs
    observe: Callable[[tuple, Any], Any] = _returned  # (the call's arguments after it, its return value) -> data


def run_calls(exercise: Exercise, function, calls: list[tuple]) -> list[dict]:
    """Returns one outcome per call of `function`: {"returned": what `observe` reads, as data} or {"raised": ...}."""
    outcomes = []
    for args in calls:
        try:
            outcomes.append({"returned": to_data(exercise.observe(args, function(*args)))})
        except Exception as error:  # the student's code failed: one line, never a traceback
            outcomes.append({"raised": one_line(error)})
    return outcomes


def verdict(exercise: Exercise, seed: int, outcomes: list[dict]) -> str | None:
    """Returns None when the outcomes are minilth's answer to the calls drawn from `seed`, else the line saying why
    not. The judge draws the calls afresh: it never reads the arguments the student's function was given."""
    calls = exercise.calls(seed)
    if not (isinstance(outcomes, list) and len(outcomes) == len(calls) and all(
            isinstance(o, dict) and (set(o) == {"returned"} or set(o) == {"raised"} and isinstance(o["raised"], str))
            for o in outcomes)):
        return "its process sent back something other than one outcome per call"
    try:
        return exercise.judge(calls, outcomes)
    except Fail as fail:
        return str(fail)
    except Exception as error:  # a value of an unexpected kind broke a comparison
        return f"returned something the check cannot compare ({one_line(error)})"


def returned(outcome: dict):
    """Returns what one call returned (as data); raises Fail with the line for a call that raised instead."""
    if "returned" in outcome:
        return outcome["returned"]
    raised = outcome["raised"]
    if raised.startswith("NotImplementedError"):
        raise Fail(NOT_WRITTEN)
    refused = REFUSED.search(raised)
    if refused:
        raise Fail(f"answered with minilth's own {refused[1].rsplit('.', 1)[-1]} ({refused[1]}): write the step "
                   f"yourself (minilth's function for it refuses to run inside yours, however it is reached)")
    raise Fail(f"your function raised {raised}")


def one_line(error: BaseException) -> str:
    """Returns 'TypeName: message' on one line, at most 200 characters of message."""
    text = " ".join(str(error).split())[:200]
    return type(error).__name__ + (f": {text}" if text else "")


# --- outcomes as data: what may cross from the student's process to the grader's ------------------------------


def to_data(value, depth: int = 0):
    """Returns `value` as plain data (tensors, numbers, strings, lists, dicts); a Mask is {"Mask": {name: flags}},
    any other object {"type": its class name}, so that the judge can say what came back instead."""
    if depth > 8:
        return {"type": "nesting too deep"}
    if isinstance(value, Mask):
        return {"Mask": {str(name): to_data(flag) for name, flag in value.items()}}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone().as_subclass(torch.Tensor)
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.as_tensor(np.asarray(value)).clone()
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [to_data(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {str(key): to_data(item, depth + 1) for key, item in value.items()}
    return {"type": type(value).__name__}


def describe(data) -> str:
    """Returns what a value read back is, in words: 'a tensor of shape (3, 4)', 'a list', 'None'."""
    if isinstance(data, torch.Tensor):
        return f"a tensor of shape {tuple(data.shape)}"
    if isinstance(data, dict) and set(data) == {"type"}:
        return f"a {data['type']}"
    if isinstance(data, dict) and set(data) == {"Mask"}:
        return "a Mask"
    return "None" if data is None else f"a {type(data).__name__}"


def mask_of(data, what: str = "a Mask") -> Mask:
    """Returns the Mask a call returned; raises Fail saying what came back instead."""
    if not (isinstance(data, dict) and set(data) == {"Mask"} and isinstance(data["Mask"], dict)):
        raise Fail(f"returned {describe(data)}, not {what}")
    try:
        return Mask(data["Mask"])
    except MaskError as error:
        raise Fail(f"returned a Mask the check cannot read ({error})") from None


def tensor_of(data, what: str) -> torch.Tensor:
    """Returns a returned tensor (or number, or list of numbers) as a tensor; raises Fail saying what came back."""
    if isinstance(data, (int, float)) or (isinstance(data, list) and all(isinstance(v, (int, float)) for v in data)):
        return torch.tensor(data)
    if not isinstance(data, torch.Tensor):
        raise Fail(f"returned {describe(data)}, not {what}")
    return data


def tiny_model(seed: int, head: str = "classification", num_labels: int = 3, **changes):
    """Returns a tiny BERT (TINY, dropout off) drawn from `seed`, in eval mode."""
    torch.manual_seed(seed)
    return build_model(BertConfig(**{**TINY, **changes}), head=head, num_labels=num_labels).eval()


def percent(mask: Mask) -> str:
    return f"{100 * mask.sparsity:.1f}%"


# --- minilth's own functions, refused while the student's function runs ---------------------------------------


def library_functions(exercise: Exercise) -> dict[str, object]:
    """Returns {dotted name: function object} of `exercise.library` (decorators unwrapped: the object that every name
    reaching the function reaches)."""
    found = {}
    for dotted in exercise.library:
        parts = dotted.split(".")
        for split in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module
            try:
                target = importlib.import_module(".".join(parts[:split]))
                break
            except ModuleNotFoundError:
                continue
        for part in parts[split:]:
            target = getattr(target, part)
        found[dotted] = inspect.unwrap(target)
    return found


def refusal(function, dotted: str):
    """Returns code that raises "minilth's own <dotted> is refused in this exercise", to put in `function.__code__`:
    every name that reaches the function object (an import, a wrapper, another module) then reaches the refusal."""
    free = function.__code__.co_freevars  # a closure's code must keep its number of free variables
    source = ("def outer():\n" + "".join(f"    {name} = None\n" for name in free)
              + "    def refuse(*args, **kwargs):\n" + (f"        {', '.join(free)}\n" if free else "")
              + f"        raise RuntimeError({REFUSAL.format(dotted)!r})\n"
              + "    return refuse\n")
    namespace = {}
    exec(source, namespace)
    return namespace["outer"]().__code__


def refuse(exercise: Exercise) -> dict:
    """Makes minilth's own functions for the exercise refuse to run; returns {function: its code} to restore them."""
    originals = {}
    for dotted, function in library_functions(exercise).items():
        originals[function] = function.__code__
        function.__code__ = refusal(function, dotted)
    return originals


@contextlib.contextmanager
def refused(exercise: Exercise):
    """While the block runs, minilth's own functions for the exercise refuse to run (a notebook's check)."""
    originals = refuse(exercise)
    try:
        yield
    finally:
        for function, code in originals.items():
            function.__code__ = code
