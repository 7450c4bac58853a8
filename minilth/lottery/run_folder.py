"""An IMP run and its output folder: starting, resuming, checking and saving rounds.

    <output>/config.json                  the run's TicketConfig; a resumed run must have the same
            /theta_i.pt                   the weights to rewind to, with --rewind-at (written with round 0)
            /rounds/round_03/mask.pt       the mask round 3 trained with
                            /heads.pt      each seed's trained task head
                            /next_mask.pt  what pruning round 3's trained model gave: round 4 trains with it
                            /metrics.json  each seed's metrics; written last, it marks the round finished
            /summary.json, .csv, .png     the rounds and the verdict (verdict.py)

Every file is written whole or not at all (files.py), and a round's files only by that round,
so an interrupted run resumes from its last finished round. A folder whose run never finished a
round belongs to nobody: any command may claim it. A damaged file is found when the run starts:
one a finished round can re-create is rewritten (and says so); for the others, the message names
the round to train again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import files
from ..checkpoints import load_mask, load_tokenizer, resolve_checkpoint, save_mask
from ..config import Experiment, TicketConfig
from ..data import Task, get_task, load_dataset
from ..errors import MinilthError
from ..prune import Mask, MaskError, is_pooler, named_tensors, prunable_names
from ..scale import distributed
from ..settings import SettingsError, flag, setting
from ..train import autocast, choose_device, model_for_task
from .verdict import write_summary

logger = logging.getLogger(__name__)


@dataclass
class Round:
    """One round of IMP: its sparsity, the mask it trained with, and the metrics of each seed's fine-tuning."""

    index: int
    sparsity: float  # the schedule's target; the mask's own is within half a weight of it
    mask: Mask
    metrics: list[dict]  # one per seed
    seconds: float = 0.0
    heads: dict = field(default_factory=dict, repr=False)  # seed -> the trained head's tensors
    next_mask: Mask | None = field(default=None, repr=False)  # what pruning the trained model gave
    theta_i: dict = field(default_factory=dict, repr=False)  # round 0 rewinding to theta_i: {step, weights: {seed:}}


@dataclass
class TicketRun:
    """An IMP run: its settings, task, checkpoint, data and folder, the rounds done, the mask the next trains with."""

    config: TicketConfig
    task: Task
    checkpoint: Path  # the pre-trained weights' folder (or file), resolved once
    folder: Path
    data: tuple  # (train, eval) datasets
    rounds: list[Round]  # finished rounds, in order
    mask: Mask | None  # the mask the next round trains with
    theta_i: dict = field(default_factory=dict)  # {"step": i, "weights": {seed: weights after step i}} (--rewind-at)

    @property
    def sparsities(self) -> list[float]:
        return self.config.sparsities()

    @property
    def finished(self) -> bool:
        return len(self.rounds) == len(self.sparsities)

    def add(self, round_: Round) -> None:
        """Makes a finished round the run's latest: the next round trains with the mask it pruned."""
        self.rounds.append(round_)
        self.mask = round_.next_mask
        self.theta_i = self.theta_i or round_.theta_i


# --- starting and reading a run --------------------------------------------------------------------


def start_run(config: TicketConfig, output_dir: str | Path, progress: bool = True) -> TicketRun:
    """Returns the run ready for its next round: everything is checked (device, precision, data, checkpoint) before
    the output folder is claimed, so a run that cannot start leaves the folder as it was.

    A finished round whose files are damaged is trained again, with the rounds after it (a
    warning says which); summary.json, .csv and .png are rewritten when one is missing or damaged.
    """
    task = get_task(config.task)
    autocast(choose_device(config.device), config.precision)  # fp16 on a CPU fails here, not after the data
    checkpoint = resolve_checkpoint(config.model)
    with distributed.rank_0_first():  # data and checkpoints are downloaded once
        data = load_task_data(config, task, checkpoint, progress)
        model = model_for_task(checkpoint, task, config.seeds[0])
    folder = claim_output_dir(output_dir, config)
    run = TicketRun(config, task, checkpoint, folder, data, [], mask=None)
    try:
        run.rounds, run.theta_i = read_rounds(run, repair=True)
    except MinilthError as error:  # theta_i.pt: every round rewound to it, so all are redone
        logger.warning(f"{error}: every round is trained again")
        run.rounds = []
    if not run.rounds:
        run.mask = dense_mask(config, model)
        _warn_if_pooler_is_small(model, run.mask.names())
    else:
        _rewrite_summary_if_damaged(run)
        if not run.finished:
            run.mask = run.rounds[-1].next_mask
    return run


def read_run(output_dir: str | Path, progress: bool = True, with_data: bool = True, **placement) -> TicketRun:
    """Returns an IMP run as its folder holds it, writing nothing: its config (with `placement` overrides such as
    data_dir or device), finished rounds and theta_i, and its data unless `with_data` is False. A damaged file
    is a one-line error saying to rerun the find_ticket command, which trains its round again."""
    folder = Path(output_dir)
    config = load_config(folder, **placement)
    task = get_task(config.task)
    checkpoint = resolve_checkpoint(config.model)
    run = TicketRun(config, task, checkpoint, folder, (), [], mask=None)
    run.rounds, run.theta_i = read_rounds(run, repair=False)
    if with_data:
        run.data = load_task_data(config, task, checkpoint, progress)
    return run


def load_task_data(config: Experiment, task: Task, checkpoint: str | Path, progress: bool = True) -> tuple:
    """Returns (train, eval) datasets of the task, tokenized for the checkpoint, capped as the config says."""
    tokenizer = load_tokenizer(checkpoint)
    train = load_dataset(task, config.data_dir, "train", tokenizer, max_examples=config.max_train_examples,
                         progress=progress)
    evaluation = load_dataset(task, config.data_dir, task.eval_split, tokenizer,
                              max_examples=config.max_eval_examples, progress=progress)
    return train, evaluation


def dense_mask(config: TicketConfig, model) -> Mask:
    """Returns the all-ones mask over the config's prunable set of the model."""
    names = prunable_names(model, include_embeddings=config.include_embeddings, include_pooler=not config.keep_pooler)
    return Mask.dense(model, names)


def load_config(output_dir: str | Path, **placement) -> TicketConfig:
    """Returns the TicketConfig find_ticket stored in the folder, with `placement` overrides (data_dir, device)."""
    path = Path(output_dir) / "config.json"
    if not path.is_file():
        raise MinilthError(f"{output_dir} is not a find_ticket output folder (no config.json); "
                           f"run `python -m minilth.find_ticket --output {output_dir} ...` first")
    unknown = set(placement) - set(Experiment.PLACEMENT)
    if unknown:
        raise MinilthError(f"only {', '.join(Experiment.PLACEMENT)} of a finished run may change, not {unknown}")
    stored = read_json(path, f"delete {path} and rerun the find_ticket command that started this run")
    moved = {name: value for name, value in placement.items() if value is not None}
    # the file's values are checked naming the file, the flags given naming the flags
    return dataclasses.replace(TicketConfig.from_dict(stored, str(path)), **moved)


def claim_output_dir(output_dir: str | Path, config: TicketConfig) -> Path:
    """Returns the folder after writing config.json into it; a folder that holds finished rounds must hold the
    same config (the data folder and device may change), one without any belongs to nobody."""
    folder = Path(output_dir)
    check_same_config(folder, config)
    files.write_text(folder / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    return folder


def check_same_config(output_dir: str | Path, config: TicketConfig) -> None:
    """Raises MinilthError when the folder holds finished rounds of a run whose config differs from `config` in
    anything but its placement (data folder, device); a folder without finished rounds passes."""
    folder = Path(output_dir)
    if (folder / "config.json").exists() and round_done(folder, 0):
        changed = load_config(folder).differences(config)
        if changed:
            raise MinilthError(f"{folder} holds a run with a different config ({', '.join(changed)} differ); "
                               f"use another --output folder or the same settings to resume it")


# --- rounds on disk --------------------------------------------------------------------------------


def round_dir(folder: Path, index: int) -> Path:
    """Returns the folder of round `index`: <output>/rounds/round_03."""
    return Path(folder) / "rounds" / f"round_{index:02d}"


def round_done(folder: Path, index: int) -> bool:
    """Returns True when round `index`'s metrics.json, written last, exists."""
    return (round_dir(folder, index) / "metrics.json").exists()


def read_rounds(run: TicketRun, repair: bool) -> tuple[list[Round], dict]:
    """Returns (the finished rounds, theta_i) as the run's folder holds them, in order, stopping at the first gap.

    A round is finished when its metrics.json exists, and whole when every file it wrote reads
    back and it trained with the mask the round before it pruned. With `repair`, the first round
    that is not whole ends the list with a warning (the run trains it again, and the rounds after
    it); without, it is a one-line error. theta_i.pt (with --rewind-at) must read back too: a
    MinilthError when it does not.
    """
    rounds, last = [], len(run.sparsities) - 1
    while round_done(run.folder, len(rounds)) and len(rounds) <= last:
        index = len(rounds)
        try:
            round_ = _read_round(run.folder, index, with_next_mask=index < last)
            if rounds and round_.mask != rounds[-1].next_mask:  # an older round's, left by a repair cut short
                raise MinilthError(f"{round_dir(run.folder, index) / 'mask.pt'} is not the mask round {index - 1} "
                                   f"pruned ({round_dir(run.folder, index - 1) / 'next_mask.pt'})")
            rounds.append(round_)
        except MinilthError as error:
            if not repair:
                raise MinilthError(f"{error}; run the find_ticket command of {run.folder} again: it trains round "
                                   f"{index} again") from None
            logger.warning(f"{error}: round {index} is trained again, and the rounds after it")
            break
    theta_i = {}
    if run.config.rewind_at and rounds:
        theta_i = load_tensors(run.folder / "theta_i.pt", "it is written with round 0")
    return rounds, theta_i


def _read_round(folder: Path, index: int, with_next_mask: bool) -> Round:
    """Returns round `index` as its folder holds it; MinilthError naming the first file that does not read back."""
    path = round_dir(folder, index) / "metrics.json"
    record = read_json(path, "it is written when the round finishes")
    if not isinstance(record, dict) or not {"metrics", "sparsity", "seconds"} <= set(record):
        raise MinilthError(f"{path} is not a round record")
    mask = load_mask(round_dir(folder, index) / "mask.pt")
    load_tensors(round_dir(folder, index) / "heads.pt", "")  # read back, not kept: only --no-rewind-head needs them
    next_mask = load_mask(round_dir(folder, index) / "next_mask.pt") if with_next_mask else None
    return Round(index, record["sparsity"], mask, record["metrics"], record["seconds"], next_mask=next_mask)


def _rewrite_summary_if_damaged(run: TicketRun) -> None:
    """Writes summary.* again when summary.json is missing, damaged or behind the finished rounds, saying so."""
    path = run.folder / "summary.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if len(stored["rounds"]) == len(run.rounds):
            return
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if path.exists():
        logger.warning(f"{path} was damaged or out of date: summary.json, .csv and .png are written again")
    write_summary(run.folder, run.rounds, run.task, run.config.structure)


def save_round(run: TicketRun, round_: Round) -> None:
    """Writes a finished round into its own folder (mask, heads, theta_i, the pruned next mask, then metrics.json,
    which marks it done) and the run's summary with it."""
    folder = round_dir(run.folder, round_.index)
    save_mask(round_.mask, folder / "mask.pt")
    files.save(round_.heads, folder / "heads.pt")
    if round_.theta_i:
        files.save(round_.theta_i, run.folder / "theta_i.pt")
    if round_.next_mask is not None:
        save_mask(round_.next_mask, folder / "next_mask.pt")
    record = {"round": round_.index, "sparsity": round_.sparsity, "metrics": round_.metrics,
              "seconds": round_.seconds}
    files.write_text(folder / "metrics.json", json.dumps(record, indent=2) + "\n")  # last: the round is done
    write_summary(run.folder, [*run.rounds, round_], run.task, run.config.structure)


def load_heads(run: TicketRun, index: int) -> dict:
    """Returns {seed: head tensors} trained in round `index`."""
    return load_tensors(round_dir(run.folder, index) / "heads.pt", redo_hint(run.folder, index))


def redo_hint(folder: Path, index: int) -> str:
    """Returns the advice for a damaged file of round `index`: delete its metrics.json and rerun."""
    return f"delete {round_dir(folder, index) / 'metrics.json'} and rerun: round {index} is trained again"


def load_tensors(path: Path, fix: str) -> dict:
    """Returns a dict of tensors written by files.save; a missing or damaged file is one line ending with `fix`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a missing or damaged zip
        raise MinilthError(f"{path} is missing or damaged ({type(error).__name__})" + (f"; {fix}" if fix else "")) \
            from None


def read_json(path: Path, fix: str):
    """Returns a JSON file's content; a missing or damaged file is one line ending with `fix`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MinilthError(f"{path} is missing or damaged ({type(error).__name__})" + (f"; {fix}" if fix else "")) \
            from None


def pooler_magnitude_ratio(model_or_sd, names: list[str]) -> float | None:
    """Returns the pooler's mean |weight| over that of the other prunable matrices; None when it is not among `names`.

    Far below 1, global magnitude pruning removes the pooler first and almost whole.
    """
    tensors = named_tensors(model_or_sd)
    pooler = [name for name in names if is_pooler(name)]
    others = [tensors[name].detach().abs().flatten() for name in names if name not in pooler]
    if not pooler or not others:
        return None
    return (tensors[pooler[0]].detach().abs().mean() / torch.cat(others).mean()).item()


def _warn_if_pooler_is_small(model, names: list[str]) -> None:
    # all-MiniLM-L6-v2's pooler is unused by sentence-transformers, which averages the token vectors, and
    # its weights are small (mean |w| 0.007 against 0.03-0.07 in the encoder):
    # IMP pruned 99.9% of it at 50% sparsity, which cut the classifier off and collapsed every seed.
    ratio = pooler_magnitude_ratio(model, names)
    if ratio is not None and ratio < 1 / 3:
        logger.warning(f"warning: the pooler's weights are {1 / ratio:.0f}x smaller than the encoder's, so global "
                       f"magnitude pruning removes it first; --keep-pooler leaves it dense")


# --- which round a command works at ----------------------------------------------------------------


@dataclass(kw_only=True)
class RoundChoice:
    """the IMP round to work at"""

    sparsity: list[str] | float | dict | None = setting(
        None, "the IMP round to work at, by its sparsity: S for every run (0.5), or TASK=S pairs (rte=0.6 mrpc=0.5); "
              "default: each run's last finished round", type=str)

    def __post_init__(self):
        self.sparsity = _parse_sparsity(self.sparsity)

    def at(self, task: str) -> float | None:
        """Returns the sparsity chosen for a run of `task` (None: its last finished round)."""
        return self.sparsity.get(task, self.sparsity.get("*"))


def _parse_sparsity(value) -> dict[str, float]:
    """Returns {task or "*": sparsity} from None, a number, a dict, or command-line strings ('0.5', 'rte=0.6')."""
    if value is None or isinstance(value, dict):
        pairs = dict(value or {})
    elif isinstance(value, (int, float)):
        pairs = {"*": value}
    else:
        try:
            pairs = {task: float(s) for task, s in (text.split("=") if "=" in text else ("*", text) for text in value)}
        except ValueError:
            raise SettingsError(f"{flag('sparsity')} takes one sparsity (0.5) or TASK=S pairs (rte=0.6 mrpc=0.5), "
                                f"got {' '.join(value)}") from None
    for task, sparsity in pairs.items():
        if not (isinstance(sparsity, (int, float)) and 0 < sparsity < 1):
            raise SettingsError(f"{flag('sparsity')} must be in (0, 1), a pruned round's, got {sparsity}")
    return {task if task == "*" else get_task(task).name: float(s) for task, s in pairs.items()}



def round_at(run: TicketRun, sparsity: float | None = None) -> Round:
    """Returns the run's finished pruned round at `sparsity` (default: the highest finished round)."""
    rounds = [r for r in run.rounds if r.index > 0]
    if not rounds:
        raise MinilthError(f"{run.folder} has no finished pruned round yet; let find_ticket run further")
    if sparsity is None:
        return rounds[-1]
    for r in rounds:
        if abs(r.sparsity - sparsity) < 1e-6:
            return r
    have = ", ".join(f"{r.sparsity:g}" for r in rounds)
    raise MinilthError(f"{run.folder} has no finished round at sparsity {sparsity:g} (it has {have}); "
                       f"pick one of those or run find_ticket further")
