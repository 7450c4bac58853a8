"""Settings of one task where they differ from the ones every task shares: a grid on a CPU trains CoLA longer and
SST-2 on a subsample, and fine-tunes every other task as the shared settings say.

    parse_task_settings(["cola:epochs=3", "sst2:max_train_examples=20000"], tasks=["cola", "sst2", "rte"])
    # -> {"cola": {"epochs": 3.0}, "sst2": {"max_train_examples": 20000}}
    for_task(config, "cola", task_settings)   # config with the task set and CoLA's own settings

A task may change how it is fine-tuned and on how much data, nothing else: the pruning schedule, the
seeds and the checkpoint are the experiment's, and where a job runs (data folder, device) is each
machine's.
"""
from __future__ import annotations

import dataclasses
import typing

from ..config import Experiment, TicketConfig
from ..data import get_task
from ..errors import MinilthError
from ..settings import SettingsError, check, flag, value_type
from ..train import FinetuneSettings

TASK_SETTINGS = tuple(f.name for f in dataclasses.fields(FinetuneSettings) if f.name not in Experiment.PLACEMENT) + (
    "max_train_examples", "max_eval_examples")
TASK_SETTINGS_HELP = ("a task's fine-tuning settings where they differ from the shared ones, TASK:NAME=VALUE each, "
                      "e.g. cola:epochs=3 sst2:max_train_examples=20000")


def parse_task_settings(given: dict | list[str] | None, tasks: list[str]) -> dict[str, dict]:
    """Returns {task: {setting: value}} from a dict or TASK:NAME=VALUE strings, each value of its setting's type;
    a task outside `tasks`, a setting a task may not change, or a value of the wrong type is a one-line error."""
    if not given:
        return {}
    if not isinstance(given, dict):
        parsed = {}
        for text in given:
            task, _, assignment = text.partition(":")
            name, equals, value = assignment.partition("=")
            check(bool(task and equals and name), f"{flag('task_settings')} takes TASK:NAME=VALUE, e.g. "
                                                  f"cola:epochs=3; got {text!r}")
            parsed.setdefault(task, {})[name.strip().replace("-", "_")] = value.strip()
        given = parsed
    hints = typing.get_type_hints(TicketConfig)
    result = {}
    for task, values in given.items():
        name = get_task(task).name
        check(name in tasks, f"{flag('task_settings')} names {task}, which nothing here fine-tunes on "
                             f"({', '.join(tasks)})")
        check(isinstance(values, dict), f"{flag('task_settings')} of {task} must map settings to values")
        for key, value in values.items():
            check(key in TASK_SETTINGS, f"{flag('task_settings')} {task}:{key}: a task may change only "
                                        f"{', '.join(TASK_SETTINGS)}")
            result.setdefault(name, {})[key] = _typed(value, hints[key], f"{task}:{key}")
    return result


def for_task(config, task: str, task_settings: dict[str, dict]):
    """Returns the config with the task set and the task's own settings; a value out of range is a one-line error
    naming the task's setting."""
    own = task_settings.get(task, {})
    try:
        return dataclasses.replace(config, task=task, **own)
    except MinilthError as error:
        raise SettingsError(f"{flag('task_settings')} of {task} ({own}): {error}") from None


def _typed(value, hint, where: str):
    """Returns a setting's value as its type hint says (a flag's text, or what a JSON file holds)."""
    kind = value_type(hint)
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            check(text in ("true", "false"), f"{flag('task_settings')} {where} takes true or false, got {value!r}")
            return text == "true"
        try:
            return kind(value)
        except ValueError:
            raise SettingsError(f"{flag('task_settings')} {where} takes a {kind.__name__}, got {value!r}") from None
    check(value is None or isinstance(value, kind) or (kind is float and isinstance(value, int)),
          f"{flag('task_settings')} {where} takes a {kind.__name__}, got {value!r}")
    return value
