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
round belongs to nobody: any command may claim it.

A round belongs to the settings and the checkpoint that made it: its metrics.json carries their
fingerprint (fingerprint(): the settings, where the run happens aside, and the sha256 of the
checkpoint's files) and the sha256 of every other file the round wrote. Every file is read
through its schema (schemas.py), and a mask is checked against the run's model (names, shapes)
and its schedule (what round k prunes). A folder of another run's rounds, by config.json or by
round 0's fingerprint, is refused in one line naming the settings that differ; a round that
does not read back whole, or was made otherwise, is trained again with the rounds after it,
saying so (reading a run without resuming it, it is a one-line error naming the round). A round
written before rounds carried a fingerprint is adopted when the folder's config.json was there and
matched, and trained again, saying so, when config.json is missing: what made it is then unknown.
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
from ..checkpoints.download import file_sha256
from ..checkpoints.pretrained import checkpoint_digest, find_config
from ..config import Experiment, TicketConfig
from ..data import Task, get_task, load_dataset
from ..errors import MinilthError
from ..model import build_model
from ..prune import Mask, MaskError, count_to_prune, is_head, is_pooler, named_tensors, prunable_names
from ..scale import distributed
from ..schemas import (FINGERPRINT, HEADS, THETA_I, FileError, check, not_a_folder, read_json, read_torch,
                       round_record)
from ..settings import SettingsError, flag, setting
from ..structured import pruned_units
from ..train import autocast, choose_device, model_for_task, training_steps
from .verdict import summary_problem, write_summary

logger = logging.getLogger(__name__)

ROUND_FILES = ("mask.pt", "heads.pt", "next_mask.pt", "theta_i.pt")  # what metrics.json records the sha256 of


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
    fingerprint: dict = field(default_factory=dict)  # what made its results: fingerprint(config, checkpoint)
    config_vouched: bool = True  # config.json was there and matched: rounds written before fingerprints are adopted

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
    """Returns the run ready for its next round: everything is checked (device, precision, data, checkpoint, the
    steps an epoch makes) before the output folder is claimed, so a run that cannot start leaves the folder as it was.

    A finished round whose files are damaged or were made otherwise is trained again, with the
    rounds after it (a warning says which); a finished run's summary.json, .csv and .png are
    rewritten when one is missing, damaged or out of date, saying which.
    """
    task = get_task(config.task)
    autocast(choose_device(config.device), config.precision)  # fp16 on a CPU fails here, not after the data
    checkpoint = resolve_checkpoint(config.model)
    with distributed.rank_0_first():  # data and checkpoints are downloaded once
        data = load_task_data(config, task, checkpoint, progress)
        model = model_for_task(checkpoint, task, config.seeds[0])
    training_steps(config, task, len(data[0].features))  # --epochs too small for one step fails here
    made_by = fingerprint(config, checkpoint)
    vouched = (Path(output_dir) / "config.json").is_file()  # and compared with `config` as the folder is claimed
    folder = claim_output_dir(output_dir, config, made_by)
    run = TicketRun(config, task, checkpoint, folder, data, [], mask=None, fingerprint=made_by,
                    config_vouched=vouched)
    run.rounds, run.theta_i = read_rounds(run, repair=True)
    if not run.rounds:
        run.mask = dense_mask(config, model)
        _warn_if_pooler_is_small(model, run.mask.names())
    elif run.finished:  # else the next round writes the summary
        _rewrite_summary_if_damaged(run)
    else:
        run.mask = run.rounds[-1].next_mask
    return run


def read_run(output_dir: str | Path, progress: bool = True, with_data: bool = True, **placement) -> TicketRun:
    """Returns an IMP run as its folder holds it, writing nothing: its config (with `placement` overrides such as
    data_dir or device), finished rounds and theta_i, and its data unless `with_data` is False. A damaged file,
    or one made with other settings or another checkpoint, is a one-line error saying to rerun the find_ticket
    command, which trains its round again."""
    folder = Path(output_dir)
    config = load_config(folder, **placement)
    task = get_task(config.task)
    checkpoint = resolve_checkpoint(config.model)
    run = TicketRun(config, task, checkpoint, folder, (), [], mask=None, fingerprint=fingerprint(config, checkpoint))
    run.rounds, run.theta_i = read_rounds(run, repair=False)
    if with_data:
        run.data = load_task_data(config, task, checkpoint, progress)
    return run


def fingerprint(config: TicketConfig, checkpoint: str | Path) -> dict:
    """Returns what makes a run's results what they are: its settings, where it runs aside (data folder, device),
    and the sha256 of its checkpoint's files. Every round and every control result carries it."""
    settings = {name: value for name, value in config.to_dict().items() if name not in Experiment.PLACEMENT}
    return {"settings": settings, "checkpoint": checkpoint_digest(checkpoint)}


def fingerprint_differences(stored: dict, config: TicketConfig, made_by: dict, source: str | Path) -> list[str]:
    """Returns what differs between the fingerprint a file carries and a run's (its config, its fingerprint): the
    names of the settings, and the checkpoint's weights. A setting added since the file was written counts as its
    default, as in config.json."""
    changed = TicketConfig.from_dict(stored["settings"], f"{source}'s fingerprint").differences(config)
    return changed + (["the checkpoint's weights"] if stored["checkpoint"] != made_by["checkpoint"] else [])


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
    return Mask.dense(model, prunable_set(config, model))


def prunable_set(config: TicketConfig, model_or_tensors) -> list[str]:
    """Returns the names of the matrices the config prunes in the model (a module, or its tensors by name)."""
    return prunable_names(model_or_tensors, include_embeddings=config.include_embeddings,
                          include_pooler=not config.keep_pooler)


def load_config(output_dir: str | Path, **placement) -> TicketConfig:
    """Returns the TicketConfig find_ticket stored in the folder, with `placement` overrides (data_dir, device)."""
    path = not_a_folder(Path(output_dir) / "config.json")
    if not path.is_file():
        raise MinilthError(f"{output_dir} is not a find_ticket output folder (no config.json); "
                           f"run `python -m minilth.find_ticket --output {output_dir} ...` first")
    unknown = set(placement) - set(Experiment.PLACEMENT)
    if unknown:
        raise MinilthError(f"only {', '.join(Experiment.PLACEMENT)} of a finished run may change, not {unknown}")
    try:
        stored = read_json(path)
    except FileError as error:
        raise MinilthError(f"{error}; delete {path} and rerun the find_ticket command that started this run") \
            from None
    moved = {name: value for name, value in placement.items() if value is not None}
    # the file's values are checked naming the file, the flags given naming the flags
    return dataclasses.replace(TicketConfig.from_dict(stored, str(path)), **moved)


def claim_output_dir(output_dir: str | Path, config: TicketConfig, made_by: dict | None = None) -> Path:
    """Returns the folder after writing config.json into it; a folder that holds finished rounds must hold the
    same config (the data folder and device may change), one without any belongs to nobody."""
    folder = Path(output_dir)
    check_same_config(folder, config, made_by)
    files.write_text(folder / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    return folder


def check_same_config(output_dir: str | Path, config: TicketConfig, made_by: dict | None = None) -> None:
    """Raises MinilthError when the folder holds finished rounds of a run whose config differs from `config` in
    anything but its placement (data folder, device): by its config.json, or (config.json deleted) by the
    fingerprint its round 0 carries, which also tells another checkpoint (`made_by`: fingerprint()). A folder
    without finished rounds passes."""
    folder = Path(output_dir)
    if not round_done(folder, 0):
        return
    changed = load_config(folder).differences(config) if (folder / "config.json").exists() else []
    stored = _stored_fingerprint(folder)
    if not changed and stored is not None and made_by is not None:
        changed = fingerprint_differences(stored, config, made_by, round_dir(folder, 0) / "metrics.json")
    if changed:
        raise MinilthError(f"{folder} holds a run with a different config ({', '.join(changed)} differ); "
                           f"use another --output folder or the same settings to resume it")


def _stored_fingerprint(folder: Path) -> dict | None:
    """Returns the fingerprint round 0's metrics.json carries; None when it carries none or does not read (the round
    is then trained again, as any damaged round)."""
    try:
        record = read_json(round_dir(folder, 0) / "metrics.json")
        return check(FINGERPRINT, record["fingerprint"], "") if isinstance(record, dict) else None
    except (MinilthError, KeyError):
        return None


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
    back through its schema, it was made by the run's settings and checkpoint (the module doc),
    its masks fit the run's model and schedule, and it trained with the mask the round before it
    pruned. With `repair`, the first round that is not whole ends the list with a warning (the
    run trains it again, and the rounds after it); without, it is a one-line error.
    """
    rounds, last, tensors = [], len(run.sparsities) - 1, model_tensors(run)
    while round_done(run.folder, len(rounds)) and len(rounds) <= last:
        index = len(rounds)
        try:
            round_ = _read_round(run, index, tensors)
            if rounds and round_.mask != rounds[-1].next_mask:  # an older round's, left by a repair cut short
                raise FileError(f"{round_dir(run.folder, index) / 'mask.pt'} is not the mask round {index - 1} "
                                f"pruned ({round_dir(run.folder, index - 1) / 'next_mask.pt'})")
            rounds.append(round_)
        except (FileError, MaskError) as error:  # not whole (a folder in a file's place is refused instead)
            if not repair:
                raise MinilthError(f"{error}; run the find_ticket command of {run.folder} again (in a sweep: its "
                                   f"shard), which trains round {index} again") from None
            logger.warning(f"{error}: round {index} is trained again, and the rounds after it")
            break
    return rounds, rounds[0].theta_i if rounds else {}


def model_tensors(run: TicketRun) -> dict[str, torch.Tensor]:
    """Returns the tensors of the run's model by name, built on the meta device: their names and shapes, no memory
    and no weights read."""
    with torch.device("meta"):
        model = build_model(find_config(run.checkpoint), head=run.task.kind, num_labels=run.task.num_labels)
    return dict(model.state_dict())


def _read_round(run: TicketRun, index: int, tensors: dict) -> Round:
    """Returns round `index` as its folder holds it; MinilthError naming the first file that is not the round's."""
    folder, last = round_dir(run.folder, index), len(run.sparsities) - 1
    path = folder / "metrics.json"
    record = read_json(path, round_record(run.task.metrics))
    _check_made_by(run, record, path, index)
    if record["round"] != index or abs(record["sparsity"] - run.sparsities[index]) > 1e-9:
        raise FileError(f"{path} holds round {record['round']} at sparsity {record['sparsity']:g}, where this run's "
                        f"round {index} is at {run.sparsities[index]:g}")
    if len(record["metrics"]) != len(run.config.seeds):
        raise FileError(f"{path} holds the metrics of {len(record['metrics'])} seeds, where the run has "
                        f"{len(run.config.seeds)}")
    mask = check_mask(run, load_mask(folder / "mask.pt"), index, tensors, folder / "mask.pt")
    _check_per_seed(run, read_torch(folder / "heads.pt", HEADS), _shapes(tensors, is_head), folder / "heads.pt")
    next_mask = None
    if index < last:
        next_mask = check_mask(run, load_mask(folder / "next_mask.pt"), index + 1, tensors, folder / "next_mask.pt")
    theta_i = {}
    if index == 0 and run.config.rewind_at:
        theta_i = read_torch(run.folder / "theta_i.pt", THETA_I)
        _check_per_seed(run, theta_i["weights"], _shapes(tensors), run.folder / "theta_i.pt")
    return Round(index, record["sparsity"], mask, record["metrics"], record["seconds"], next_mask=next_mask,
                 theta_i=theta_i)


def _check_made_by(run: TicketRun, record: dict, path: Path, index: int) -> None:
    """Raises FileError unless the round was made by the run's settings and checkpoint and its other files are the
    ones it wrote; a round written before rounds carried a fingerprint passes when config.json vouched for it."""
    if "fingerprint" not in record:
        if not run.config_vouched:
            raise FileError(f"{path} was written before rounds recorded their settings, and config.json is "
                            f"missing: what trained it is unknown")
        return
    changed = fingerprint_differences(record["fingerprint"], run.config, run.fingerprint, path)
    if changed:
        raise FileError(f"{path} was made with other settings ({', '.join(changed)} differ)")
    for name, digest in record.get("files", {}).items():
        file = not_a_folder(round_file(run.folder, index, name))
        if not file.is_file() or file_sha256(file) != digest:
            raise FileError(f"{file} is missing, or is not the file round {index} wrote")


def round_file(folder: Path, index: int, name: str) -> Path:
    """Returns where a file of round `index` is (one of ROUND_FILES; theta_i.pt beside the rounds)."""
    if name not in ROUND_FILES:
        raise FileError(f"{round_dir(folder, index) / 'metrics.json'} records a file '{name}' no round writes")
    return Path(folder) / name if name == "theta_i.pt" else round_dir(folder, index) / name


def check_mask(run: TicketRun, mask: Mask, index: int, tensors: dict, source: str | Path) -> Mask:
    """Returns the mask after checking that round `index` of the run trains with it: it masks the run's prunable
    matrices (names and shapes of the model's `tensors`) and prunes what the schedule's sparsity prunes (in
    weights; in heads and neurons for a structured run). MaskError naming `source` otherwise."""
    expected = prunable_set(run.config, tensors)
    if mask.names() != expected:
        strangers = sorted(set(mask.names()) ^ set(expected)) or ["their order"]
        raise MaskError(f"{source} masks other matrices than this run prunes ({strangers[0]}): it was made for "
                        f"another model or other settings")
    try:
        mask.check_fits(tensors)
    except MaskError as error:
        raise MaskError(f"{source}: {error}") from None
    sparsity = run.sparsities[index]
    if not prunes_as_scheduled(run.config, mask, sparsity, find_config(run.checkpoint).num_attention_heads):
        raise MaskError(f"{source} prunes {100 * mask.sparsity:.2f}% of the weights, not what round {index} of this "
                        f"run prunes ({100 * sparsity:g}%{' of the units' if run.config.structured else ''})")
    return mask


def prunes_as_scheduled(config: TicketConfig, mask: Mask, sparsity: float, num_heads: int) -> bool:
    """Returns True when the mask prunes what IMP prunes at `sparsity`: round(s x the weights); or, structured,
    round(s x the units) of each kind it prunes (per layer: every layer its share, each count rounded)."""
    if not config.structured:
        return mask.num_pruned == count_to_prune(sparsity, mask.num_total)
    counts = pruned_units(config, mask, num_heads)
    layers = len({name.split(".layer.")[1].split(".")[0] for name in mask.names() if ".layer." in name})
    allowed = 0.5 * (layers if config.rank_within == "layer" else 1)  # each count's rounding
    return all(abs(pruned - sparsity * total) <= allowed for pruned, total in counts.values())


def _shapes(tensors: dict, keep=lambda name: True) -> dict[str, tuple]:
    return {name: tuple(tensor.shape) for name, tensor in tensors.items() if keep(name)}


def _check_per_seed(run: TicketRun, per_seed: dict, shapes: dict, path: Path) -> None:
    """Raises FileError unless `per_seed` ({seed: {name: tensor}}: trained heads, theta_i) holds the run's seeds,
    each with the tensors of the run's model (`shapes`: their names and shapes)."""
    if sorted(per_seed) != sorted(run.config.seeds):
        raise FileError(f"{path} holds seeds {sorted(per_seed)}, where the run's are {run.config.seeds}")
    for seed, tensors in per_seed.items():
        found = _shapes(tensors)
        if found != shapes:
            differ = sorted(name for name in {**found, **shapes} if found.get(name) != shapes.get(name))
            raise FileError(f"{path}: seed {seed}'s tensors do not fit the run's model ({differ[0]}: "
                            f"{found.get(differ[0], 'missing')}, expected {shapes.get(differ[0], 'none')})")


def _rewrite_summary_if_damaged(run: TicketRun) -> None:
    """Writes summary.* again when one is missing, damaged or behind the finished rounds, saying which."""
    problem = summary_problem(run.folder, run.rounds, run.task, run.config.structure)
    if problem:
        logger.warning(f"{problem}: summary.json, .csv and .png are written again")
        write_summary(run.folder, run.rounds, run.task, run.config.structure)


def save_round(run: TicketRun, round_: Round) -> None:
    """Writes a finished round into its own folder (mask, heads, theta_i, the pruned next mask, then metrics.json,
    which marks it done, with the run's fingerprint and the sha256 of each file) and the run's summary with it."""
    folder = round_dir(run.folder, round_.index)
    written = {"mask.pt": save_mask(round_.mask, folder / "mask.pt"), "heads.pt": folder / "heads.pt"}
    files.save(round_.heads, folder / "heads.pt")
    if round_.theta_i:
        written["theta_i.pt"] = run.folder / "theta_i.pt"
        files.save(round_.theta_i, written["theta_i.pt"])
    if round_.next_mask is not None:
        written["next_mask.pt"] = save_mask(round_.next_mask, folder / "next_mask.pt")
    digests = {name: file_sha256(path) for name, path in written.items()} if distributed.is_writer() else {}
    record = {"round": round_.index, "sparsity": round_.sparsity, "metrics": round_.metrics,
              "seconds": round_.seconds, "fingerprint": run.fingerprint, "files": digests}
    files.write_text(folder / "metrics.json", json.dumps(record, indent=2) + "\n")  # last: the round is done
    write_summary(run.folder, [*run.rounds, round_], run.task, run.config.structure)


def load_heads(run: TicketRun, index: int) -> dict:
    """Returns {seed: head tensors} trained in round `index`."""
    try:
        return read_torch(round_dir(run.folder, index) / "heads.pt", HEADS)
    except FileError as error:
        raise MinilthError(f"{error}; delete {round_dir(run.folder, index) / 'metrics.json'} and rerun: round "
                           f"{index} is trained again") from None


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

    def at(self, task: str, strict: bool = False) -> float | None:
        """Returns the sparsity chosen for a run of `task` (None: its last finished round). `strict`, for a command
        that works on one run: TASK=S pairs that do not name its task are a SettingsError, not its last round."""
        named = sorted(name for name in self.sparsity if name != "*")
        if strict and named and task not in named:
            raise SettingsError(f"{flag('sparsity')} names {', '.join(named)}, but the run is {get_task(task).name}'s; "
                                f"give {flag('sparsity')} S or {get_task(task).name}=S")
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
