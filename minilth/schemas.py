"""Every file minilth reads back, read through one declared schema per kind: each field's type and range checked.

    record = read_json(path, round_record(task.metrics))     # a round's metrics.json
    heads = read_torch(path, HEADS)                           # a round's heads.pt

A file that does not fit is a FileError naming the file, the field, what is there and what is
expected, in one line: `round_01/metrics.json: metrics[0].acc is 'high', expected a number in
[0, 1]`. Whoever reads the file decides what follows: a file minilth wrote is redone, saying so;
a file the user wrote (config.json edited by hand, sweep.json, a SQuAD file) is refused with that
line. The kinds, at a glance:

    file                                   schema                        written by
    rounds/round_XX/metrics.json           round_record(metric names)    lottery/run_folder.save_round
    rounds/round_XX/{mask,next_mask}.pt    MASK_FILE                     checkpoints/masks.save_mask
    rounds/round_XX/heads.pt               HEADS                         lottery/run_folder.save_round
    theta_i.pt                             THETA_I                       lottery/run_folder.save_round
    summary.json                           SUMMARY                       lottery/verdict.write_summary
    config.json, sweep.json's config       settings_record(TicketConfig) lottery/run_folder, scale/grid
    controls/.../seed_k.json               control_result(metric names)  lottery/baselines.run_one_control
    controls/.../.seed_k.partial.pt        STANDARD_PRUNING_PARTIAL      lottery/baselines.standard_pruning
    transfer.json                          TRANSFER_RECORD               lottery/mask_transfer.transfer_matrix
    a sweep's transfer/.../seed_k.json     TRANSFER_RUN                  scale/grid.Runner.run_transfer
    sweep.json                             SWEEP                         scale/grid.save_sweep
    SQuAD's train/dev-v1.1.json            SQUAD                         the SQuAD authors

A record may hold more keys than its schema names (a later version's): only the named ones are
checked. JSON numbers are finite (NaN and infinity are refused) unless a schema allows infinity.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path

import torch

from .errors import MinilthError


class FileError(MinilthError, ValueError):
    """A file that is missing, unreadable, or whose content does not fit its kind's schema."""


class Mismatch(Exception):
    """Raised inside a check: the field (a path such as `metrics[0].acc`), what was expected, what is there."""

    def __init__(self, field: str, expected: str, value, missing: bool = False):
        super().__init__(field)
        self.field, self.expected, self.value, self.missing = field, expected, value, missing

    def describe(self) -> str:
        """Returns `metrics[0].acc is 'high', expected a number in [0, 1]` (or `... is missing, ...`)."""
        shown = "missing" if self.missing else f"{_short(self.value)}"
        where = self.field or "the file"
        return f"{where} is {shown}, expected {self.expected}"


def _short(value) -> str:
    text = repr(value) if not isinstance(value, torch.Tensor) else f"a tensor of shape {tuple(value.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


# --- the vocabulary of schemas ---------------------------------------------------------------------


class Schema:
    """What one value must be; `check` returns it or raises Mismatch."""

    expected = "a value"

    def check(self, value, field: str = ""):
        return value


class Anything(Schema):
    expected = "any value"


class Number(Schema):
    """A number (never a bool) in [low, high]; `whole` for counts; infinity only where `infinite` allows it."""

    def __init__(self, low: float = -math.inf, high: float = math.inf, whole: bool = False, infinite: bool = False,
                 expected: str | None = None):
        self.low, self.high, self.whole, self.infinite = low, high, whole, infinite
        kind = "a whole number" if whole else "a number"
        if expected:
            self.expected = expected
        elif low > -math.inf and high < math.inf:
            self.expected = f"{kind} in [{low:g}, {high:g}]"
        elif low > -math.inf:
            self.expected = f"{kind} of at least {low:g}"
        else:
            self.expected = kind

    def check(self, value, field: str = ""):
        kinds = (int,) if self.whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or math.isnan(value) \
                or (math.isinf(value) and not self.infinite) or not self.low <= value <= self.high:
            raise Mismatch(field, self.expected, value)
        return value


class Flag(Schema):
    expected = "true or false"

    def check(self, value, field: str = ""):
        if not isinstance(value, bool):
            raise Mismatch(field, self.expected, value)
        return value


class Text(Schema):
    """A non-empty string, one of `choices` when they are given."""

    def __init__(self, choices: tuple | None = None):
        self.choices = choices
        self.expected = f"one of {', '.join(map(str, choices))}" if choices else "a non-empty string"

    def check(self, value, field: str = ""):
        if not isinstance(value, str) or not value or (self.choices and value not in self.choices):
            raise Mismatch(field, self.expected, value)
        return value


class Maybe(Schema):
    """The inner schema's value, or null."""

    def __init__(self, inner: Schema):
        self.inner = inner
        self.expected = f"{inner.expected} or null"

    def check(self, value, field: str = ""):
        try:
            return None if value is None else self.inner.check(value, field)
        except Mismatch as mismatch:
            if mismatch.field != field:  # deeper inside the value: that part's own expectation
                raise
            raise Mismatch(field, self.expected, value) from None


class ListOf(Schema):
    """A list of at least `min_length` items, each of `item`."""

    def __init__(self, item: Schema, min_length: int = 0):
        self.item, self.min_length = item, min_length
        self.expected = f"a list{' of at least one' if min_length else ''} (each {item.expected})"

    def check(self, value, field: str = ""):
        if not isinstance(value, list) or len(value) < self.min_length:
            raise Mismatch(field, self.expected, value)
        return [self.item.check(item, f"{field}[{i}]") for i, item in enumerate(value)]


class MapOf(Schema):
    """A dict whose keys are of `key` (strings by default) and values of `value`."""

    def __init__(self, value: Schema, key: Schema | None = None, min_length: int = 0, expected: str | None = None):
        self.value, self.key, self.min_length = value, key or Text(), min_length
        self.expected = expected or f"a map of {self.key.expected} to {value.expected}"

    def check(self, value, field: str = ""):
        if not isinstance(value, dict) or len(value) < self.min_length:
            raise Mismatch(field, self.expected, value)
        return {self.key.check(k, f"a key of {field or 'the file'}"): self.value.check(v, _join(field, k))
                for k, v in value.items()}


class Record(Schema):
    """A dict with `required` keys and `optional` ones, each of its schema; `others` checks the keys not named."""

    def __init__(self, required: dict[str, Schema], optional: dict[str, Schema] | None = None,
                 others: Schema | None = None):
        self.required, self.optional, self.others = required, optional or {}, others
        self.expected = f"an object with {', '.join(required)}" if required else "an object"

    def check(self, value, field: str = ""):
        if not isinstance(value, dict):
            raise Mismatch(field, self.expected, value)
        checked = dict(value)
        for key, schema in {**self.required, **self.optional}.items():
            if key in value:
                checked[key] = schema.check(value[key], _join(field, key))
            elif key in self.required:
                raise Mismatch(_join(field, key), schema.expected, None, missing=True)
        for key in value.keys() - self.required.keys() - self.optional.keys():
            if self.others is not None:
                checked[key] = self.others.check(value[key], _join(field, key))
        return checked


class Tensor(Schema):
    """A torch tensor, of `dtype` when it is given."""

    def __init__(self, dtype: torch.dtype | None = None):
        self.dtype = dtype
        self.expected = f"a {dtype} tensor" if dtype else "a tensor"

    def check(self, value, field: str = ""):
        if not isinstance(value, torch.Tensor) or (self.dtype is not None and value.dtype != self.dtype):
            raise Mismatch(field, self.expected, value)
        return value


def _join(field: str, key) -> str:
    return f"{field}.{key}" if field else str(key)


# --- the kinds of files ----------------------------------------------------------------------------

MAX_SEED = 2**32 - 1  # numpy's generators take seeds up to this
FRACTION = Number(0, 1)
SECONDS = Number(0)
SEED = Number(0, MAX_SEED, whole=True, expected=f"a seed (a whole number from 0 to {MAX_SEED})")
COUNT = Number(0, whole=True)
# The range of each metric minilth reports: GLUE's and MLM's are fractions, SQuAD's percent (f1 is both).
METRIC_RANGES = {"acc": Number(0, 1), "f1": Number(0, 100), "mcc": Number(-1, 1), "pearson": Number(-1, 1),
                 "spearman": Number(-1, 1), "exact_match": Number(0, 100), "accuracy": Number(0, 1),
                 "perplexity": Number(1, infinite=True), "loss": Number(0, infinite=True)}


def metrics(names: tuple[str, ...]) -> Record:
    """A fine-tuning's metrics: each of the task's metrics in its range; the other entries (sampling error, chance
    level) numbers or null."""
    return Record({name: METRIC_RANGES.get(name, Number()) for name in names}, others=Maybe(Number(infinite=True)))


# A round's, a control's and a transfer cell's record say what made them: the settings (a TicketConfig as a dict,
# without where it ran) and the sha256 of the checkpoint's weights (lottery/run_folder.fingerprint).
FINGERPRINT = Record({"settings": MapOf(Anything()), "checkpoint": Text()})


def round_record(metric_names: tuple[str, ...]) -> Record:
    """rounds/round_XX/metrics.json: written last, it marks the round finished; `files` holds the sha256 of the
    other files the round wrote (records written before fingerprints existed have neither)."""
    return Record({"round": COUNT, "sparsity": FRACTION, "metrics": ListOf(metrics(metric_names), min_length=1),
                   "seconds": SECONDS},
                  optional={"fingerprint": FINGERPRINT, "files": MapOf(Text())})


MASK_FILE_FORMAT = "minilth-mask"
MASK_FILE = Record({"format": Text((MASK_FILE_FORMAT,)), "version": COUNT, "names": ListOf(Text(), min_length=1),
                    "shapes": ListOf(ListOf(COUNT)), "num_kept": ListOf(COUNT), "packed": ListOf(Tensor(torch.uint8))})
PER_SEED = MapOf(MapOf(Tensor()), key=SEED, min_length=1, expected="a map of seeds to {name: tensor}")
HEADS = PER_SEED  # each seed's trained task head
THETA_I = Record({"step": COUNT, "weights": PER_SEED})  # each seed's weights after step i of round 0

SUMMARY = Record({"task": Text(), "metric": Text(), "dense_mean": Number(), "noise": Number(0),
                  "rounds": ListOf(Record({"round": COUNT, "sparsity": FRACTION, "actual_sparsity": FRACTION,
                                           "mean": Number(), "std": Number(0), "within_noise": Flag(),
                                           "at_least_dense": Flag()}), min_length=1)})


def control_result(metric_names: tuple[str, ...]) -> Record:
    """controls/sparsity_S/<control>/seed_k.json; standard pruning adds each of its rounds."""
    return Record({"control": Text(), "seed": SEED, "task": Text(), "sparsity": FRACTION, "imp_sparsity": FRACTION,
                   "metrics": metrics(metric_names), "seconds": SECONDS},
                  optional={"rounds": ListOf(Record({"round": COUNT, "sparsity": FRACTION,
                                                     "metrics": metrics(metric_names)})),
                            "fingerprint": FINGERPRINT, "imp_mask": Text(), "mask_file": Text()})


# Standard pruning's state after each of its rounds: resumed after an interruption.
STANDARD_PRUNING_PARTIAL = Record({"flags": MapOf(Tensor(torch.bool), min_length=1), "state": MapOf(Tensor()),
                                   "records": Text()}, optional={"made_by": Text()})

# One fine-tuning of a transfer matrix: the transfer command's transfer.json holds many, a sweep one per file.
TRANSFER_RUN = Record({"source": Text(), "target": Text(), "seed": SEED, "metrics": MapOf(Maybe(Number(
    infinite=True))), "seconds": SECONDS}, optional={"mask": Text(), "sparsity": FRACTION, "fingerprint": Text()})
TRANSFER_RECORD = Record({"settings": MapOf(Anything()), "runs": MapOf(TRANSFER_RUN),
                          "sources": MapOf(Record({"path": Text(), "sparsity": FRACTION, "fingerprint": Text()}))})

SWEEP = Record({"format": Text(), "tasks": ListOf(Text(), min_length=1), "config": MapOf(Anything()),
                "controls": ListOf(Text()), "sparsity": MapOf(FRACTION),
                "transfer": Record({"sources": ListOf(Text()), "targets": ListOf(Text())})},
               optional={"task_settings": MapOf(MapOf(Anything()))})

SQUAD = Record({"data": ListOf(Record({"paragraphs": ListOf(Record({"context": Text(), "qas": ListOf(Record({
    "id": Text(), "question": Text(), "answers": ListOf(Record({"text": Text(), "answer_start": COUNT}))}))}))}),
    min_length=1)})


def settings_record(cls) -> Record:
    """A settings dataclass as a file holds it (config.json): each field of its declared type, among its choices;
    the fields without a default required. Ranges are the dataclass's own checks (its __post_init__)."""
    hints = typing.get_type_hints(cls)
    required, optional = {}, {}
    for field in dataclasses.fields(cls):
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        (optional if has_default else required)[field.name] = _schema_of(hints[field.name],
                                                                          field.metadata.get("choices"))
    return Record(required, optional)


def _schema_of(hint, choices: tuple | None) -> Schema:
    """The schema of a value of type `hint`: int, float, str, bool, list[...] and `X | None`."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if type(None) in typing.get_args(hint):
        return Maybe(_schema_of(args[0], choices))
    if typing.get_origin(hint) is list:
        return ListOf(_schema_of(args[0], choices))
    return {int: Number(whole=True), float: Number(), bool: Flag(), str: Text(choices)}.get(hint, Anything())


# --- reading -----------------------------------------------------------------------------------------


def check(schema: Schema, value, source: str | Path, field: str = ""):
    """Returns the value as the schema checks it; a FileError `{source}: {field} is ..., expected ...` otherwise
    (`field`: where the value sits in its file)."""
    try:
        return schema.check(value, field)
    except Mismatch as mismatch:
        raise FileError(f"{source}: {mismatch.describe()}") from None


def read_json(path: str | Path, schema: Schema = Anything()):
    """Returns a JSON file's content checked by the schema; FileError when it is missing, not JSON, or does not fit.

    A folder where the file belongs is a MinilthError, never a FileError: whoever redoes damaged
    files must not try to write over a folder the user made."""
    path = not_a_folder(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FileError(f"{path} is missing or damaged ({type(error).__name__})") from None
    return check(schema, value, path)


def read_torch(path: str | Path, schema: Schema = Anything()):
    """Returns a torch file's content (loaded with weights_only: no code is ever unpickled) checked by the schema;
    FileError when it is missing, damaged, or does not fit (a folder: as read_json)."""
    path = not_a_folder(path)
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a missing or damaged zip
        raise FileError(f"{path} is missing or damaged ({type(error).__name__})") from None
    return check(schema, value, path)


def not_a_folder(path: str | Path) -> Path:
    """Returns the path; a MinilthError when a folder is where the file belongs."""
    path = Path(path)
    if path.is_dir():
        raise MinilthError(f"{path} is a folder, where minilth keeps a file; move the folder away")
    return path
