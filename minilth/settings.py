"""Settings declared once: a dataclass field holds a setting's default and its help, and the
command line is derived from it, so a flag and its field always share one name.

    @dataclass(kw_only=True)
    class FinetuneSettings:
        epochs: float | None = setting(None, "epochs per fine-tuning (default: the task's)")

    add_arguments(parser, FinetuneSettings)           # --epochs EPOCHS
    settings = from_arguments(FinetuneSettings, args)  # only the flags given; the rest keep their defaults

Booleans become `--flag` (default False) or `--flag/--no-flag` (default True), `list[int]` takes
several values, and `choices` restricts a value. Each settings class checks its values in
`__post_init__`, so a bad value fails before any work with one line that says what to do.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing

from . import schemas
from .errors import MinilthError, report_once


class SettingsError(MinilthError, ValueError):
    """A setting with an impossible value."""


def setting(default=dataclasses.MISSING, help: str = "", *, choices: tuple | None = None, nargs: str | None = None,
            type: typing.Callable | None = None):
    """Returns a dataclass field with its help text (and allowed values) for the command line.

    `nargs` and `type` override what the field's type hint gives the flag (e.g. nargs="*" for a list that may be
    given empty, type=str for values __post_init__ parses)."""
    metadata = {"help": help, "choices": choices, "nargs": nargs, "type": type}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check(condition: bool, message: str) -> None:
    """Raises SettingsError(message) unless the condition holds."""
    if not condition:
        raise SettingsError(message)


def check_choices(settings) -> None:
    """Raises SettingsError for a field whose value is not among its `choices`: argparse checks the command line
    only, and settings also come from code and from a run's config.json."""
    for field in dataclasses.fields(settings):
        choices, values = field.metadata.get("choices"), getattr(settings, field.name)
        many = isinstance(values, list)  # a list setting: each value is one of the choices
        name = field.name.replace("_", " ").removesuffix("s" if many else "")
        for value in (values if many else [values]) if choices else ():
            check(value in choices, f"unknown {name} '{value}' ({flag(field.name)}); use one of {', '.join(choices)}")


def flag(name: str) -> str:
    """Returns the command-line flag of a field: learning_rate -> --learning-rate."""
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls, order: tuple = (), only: tuple = (), exclude: tuple = (),
                  optional: bool = False) -> None:
    """Adds one flag per field of the settings class `cls` (or only those named), grouped by the class that
    declares them (titled with its docstring's first line), in `order` (default: base classes first).

    Flags left out of the command line are absent from the parsed namespace, so the dataclass
    keeps its own default. `optional` makes required fields optional (for overriding a stored run).
    """
    hints = typing.get_type_hints(cls)
    for owner in order or [c for c in reversed(cls.__mro__) if dataclasses.is_dataclass(c)]:
        wanted = [f for f in declared_fields(owner) if (not only or f.name in only) and f.name not in exclude]
        if not wanted:
            continue
        group = parser.add_argument_group((owner.__doc__ or owner.__name__).splitlines()[0])
        for field in wanted:
            _add_flag(group, field, hints[field.name], required=_is_required(field) and not optional)


def declared_fields(cls) -> list[dataclasses.Field]:
    """Returns the fields a dataclass declares itself, not those it inherits."""
    inherited = {f.name for base in cls.__bases__ if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)}
    return [f for f in dataclasses.fields(cls) if f.name not in inherited]


def _add_flag(group, field: dataclasses.Field, hint, required: bool) -> None:
    kind, default = field.metadata.get("type") or value_type(hint), _default(field)
    kind = text if kind is str else kind
    options = dict(dest=field.name, default=argparse.SUPPRESS, help=_help(field, default))
    if kind is bool:
        action = argparse.BooleanOptionalAction if default is True else "store_true"
        group.add_argument(flag(field.name), action=action, **options)
        return
    if field.metadata.get("nargs") or _is_list(hint):
        options["nargs"] = field.metadata.get("nargs") or "+"
    choices = field.metadata.get("choices")
    group.add_argument(flag(field.name), type=kind, required=required, choices=choices,
                       metavar=None if choices else field.name.upper(), **options)


def text(value: str) -> str:
    """Returns a text flag's value; an empty one is refused, as it would be read as the current folder or a default."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty value; give a value")
    return value


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `error: ...; see --help`, and exit 2 (no usage block).

    Flags are never abbreviated: a prefix that works today is ambiguous once a flag is added, and
    torchrun, whose parser reads the command's flags too, takes `--run` for its own `--run-path`.
    Under torchrun only rank 0 prints the line (errors.report_once).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(report_once(f"error: {message}; see {self.prog} --help", 2))


def add_command_options(parser: argparse.ArgumentParser, output: str, quiet: bool = True) -> None:
    """Adds the options of a command that are not settings of its run: --output (and --quiet)."""
    group = parser.add_argument_group("command")
    group.add_argument("--output", default=None, type=text, help=f"output folder (default: {output})")
    if quiet:
        group.add_argument("--quiet", action="store_true", help="no progress bars")


def from_arguments(cls, args: argparse.Namespace, defaults: dict | None = None, **extra):
    """Returns an instance of `cls` from the parsed flags that belong to it, over `defaults` (a preset's
    values, which a flag given on the command line replaces), plus `extra` values."""
    names = {field.name for field in dataclasses.fields(cls)}
    values = {name: value for name, value in vars(args).items() if name in names}
    missing = [flag(f.name) for f in dataclasses.fields(cls)
               if _is_required(f) and f.name not in {**(defaults or {}), **values, **extra}]
    if missing:
        raise SettingsError(f"give {', '.join(missing)}")
    return cls(**{**(defaults or {}), **values, **extra})


def to_dict(settings) -> dict:
    """Returns the settings as a plain dict (what a run's config.json holds)."""
    return dataclasses.asdict(settings)


def from_dict(cls, values: dict, source: str):
    """Returns `cls(**values)`; a key this version does not know is a one-line SettingsError naming `source`.

    Keys missing from `values` take their current default: a run written before a setting existed
    ran with that setting's default.
    """
    if not isinstance(values, dict):
        raise SettingsError(f"{source} does not hold a JSON object of settings; delete it and rerun the command")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"{source} has settings this version of minilth does not know ({', '.join(unknown)}): "
                            f"it was written by another version; use that version, or delete those keys if the "
                            f"run used their defaults")
    try:
        return cls(**schemas.check(schemas.settings_record(cls), values, source))
    except schemas.FileError as error:  # a value of the wrong type, or a required setting missing
        raise SettingsError(f"{error}; correct it there, or delete the file and rerun the command that wrote it") \
            from None
    except SettingsError as error:  # the check names a flag the user never gave: in a file it is a key
        message = re.sub(r"--([a-z][a-z-]*)", lambda match: match.group(1).replace("-", "_"), str(error))
        raise SettingsError(f"{source}: {message}; correct it there, or delete the file and rerun the command "
                            f"that wrote it") from None


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _help(field: dataclasses.Field, default) -> str:
    text = field.metadata.get("help", "")
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    return text if default is None or isinstance(default, bool) else f"{text} (default: {shown})"


def value_type(hint) -> type:
    """Returns the type a flag's value is parsed with: int, float, str or bool (Optional and list unwrapped)."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if _is_list(hint):
        return value_type(typing.get_args(_without_none(hint))[0])
    if args:
        return value_type(args[0])
    return hint


def _without_none(hint):
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args and typing.get_origin(hint) is not list else hint


def _is_list(hint) -> bool:
    return typing.get_origin(_without_none(hint)) is list
