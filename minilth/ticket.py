"""Finding a lottery ticket: iterative magnitude pruning (IMP) with rewinding, the paper's algorithm.

Round k starts from a mask m_k (round 0's prunes nothing) and does three things:

    rewind   theta  <- m_k * theta_0        the pre-trained weights (or theta_i, after i steps of
                                            the dense fine-tuning); pruned weights are zero
    train    fine-tune the subnetwork on the task, once per seed; pruned weights stay zero
    prune    m_k+1  <- drop the smallest-magnitude weights the mask still keeps, globally over the
                       prunable matrices, until the next sparsity of the schedule (10% of the
                       original weights more per round, by default); or, with `structure`, the
                       least important whole heads and feed-forward neurons (structured.py)

`imp_round` is exactly that, and `find_ticket` runs rounds until the target sparsity. Round 0's
fine-tuning is the dense baseline a ticket is judged against (same seeds, same data). The first
seed's trained model is the one pruned. Every round writes its mask, heads and metrics before the
next begins, so an interrupted run resumes from its last finished round, and a folder whose run
never finished a round belongs to nobody: any command may claim it.

What minilth rewinds: the whole model, encoder and task head, to its state before fine-tuning
(theta_0: the pre-trained encoder and the head as initialised by the seed). The reference code
keeps the head trained in the previous round instead; `rewind_head=False` does that.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed, files
from .datasets import load_dataset
from .errors import MinilthError
from .prune import (Mask, is_head, magnitude_prune, pooler_magnitude_ratio, prunable_names, rewind, snapshot,
                    sparsity_schedule)
from .report import describe, plot_sparsity_curve, render_table, write_csv
from .settings import check, flag, from_dict, setting, to_dict
from .structured import IMPORTANCES, STRUCTURES, Units, gradient_importance, structured_prune
from .tasks import TASKS, Task, get_task
from .train import (FinetuneSettings, History, choose_device, finetune, first_batches, model_for_task,
                    training_steps)
from .weights import load_tokenizer

logger = logging.getLogger(__name__)


# --- settings -------------------------------------------------------------------------------------

RANKING_SCOPES = ("model", "layer")  # --rank-within: where structured pruning ranks units
GRADIENT_BATCHES = 8  # --importance gradient: batches of the training data its |dLoss/dgate| is summed over


@dataclass(kw_only=True)
class Experiment(FinetuneSettings):
    """what to fine-tune: the task, the checkpoint, its data and the seeds"""

    task: str = setting(help=f"one of: {', '.join(TASKS)}")
    model: str = setting("bert-base-uncased", "a checkpoint name (bert-base-uncased, all-MiniLM-L6-v2, ...) "
                                              "or folder")
    data_dir: str | None = setting(None, "the folder holding the task folders, e.g. data/glue for data/glue/RTE "
                                         "(default: $MINILTH_DATA_DIR, else data/glue); missing task files "
                                         "are downloaded there")
    seeds: list[int] = setting([0], "one fine-tuning per seed (head initialisation, dropout, data order)")
    max_train_examples: int | None = setting(None, "use only the first N training examples")
    max_eval_examples: int | None = setting(None, "evaluate on the first N examples only")

    # Where a run happens, not what it computes: a resumed run may change these.
    PLACEMENT = ("data_dir", "device")

    def __post_init__(self):
        super().__post_init__()
        self.task = get_task(self.task).name  # an unknown task fails here, before any work
        check(len(self.seeds) > 0, "give at least one seed")
        check(len(set(self.seeds)) == len(self.seeds), f"seeds must differ, got {self.seeds}")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{flag(name)} must be at least 1, got {value}")

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclass(kw_only=True)
class TicketConfig(Experiment):
    """iterative magnitude pruning"""

    target_sparsity: float = setting(0.9, "the last round's sparsity of the prunable weights, in [0, 1)")
    rate: float = setting(0.1, "fraction pruned per round")
    schedule: str = setting("original", "original: rate x the original weights per round (the paper); "
                                        "remaining: rate x the weights left", choices=("original", "remaining"))
    rewind_at: float = setting(0.0, "0 rewinds to the pre-trained weights theta_0; 0.05 to the weights after 5%% "
                                    "of the dense fine-tuning (theta_i), whose learning-rate schedule and batch "
                                    "order the later rounds continue from there")
    rewind_head: bool = setting(True, "rewind the task head to its initialisation each round; --no-rewind-head "
                                      "keeps the previous round's trained head (the reference code)")
    keep_pooler: bool = setting(False, "leave the pooler dense; the paper prunes it, but a pooler much smaller "
                                       "than the encoder (sentence-transformers' MiniLM, which never used it: 6x) "
                                       "is then pruned first and almost entirely")
    include_embeddings: bool = setting(False, "prune the embedding matrices too (the paper does not)")
    structure: str = setting("unstructured", "what IMP prunes: single weights (the paper), or whole attention heads "
                                             "and/or feed-forward neurons; then the sparsity is the fraction of the "
                                             "heads and of the neurons removed, each ranked over the whole model or "
                                             "within each layer (--rank-within; summary.csv's actual_sparsity: the "
                                             "fraction of prunable weights)",
                             choices=tuple(STRUCTURES))
    importance: str = setting("magnitude", "how structured pruning ranks heads and neurons: magnitude, the L2 norm "
                                           "of a unit's weights (a head's rows of Q, K, V and columns of the "
                                           "attention output; a neuron's row and column); gradient, |dLoss/dgate| "
                                           f"of a gate on each unit over the first {GRADIENT_BATCHES} training "
                                           "batches, normalised per layer (Michel et al. 2019)", choices=IMPORTANCES)
    rank_within: str = setting("model", "structured pruning ranks heads and neurons over the whole model, or within "
                                        "each layer, which then loses the same share: an evenly narrower model "
                                        "(on MiniLM at 50%%, 1.89x faster than dense against 1.69x; "
                                        "benchmarks/README.md)", choices=RANKING_SCOPES)
    lr_decay: str = setting("finetuning", "finetuning: the learning rate decays linearly to 0 within each "
                                          "fine-tuning (BERT's recipe, the reference's dense script); all_rounds: "
                                          "each round restarts a decay that would reach 0 only after every round's "
                                          "steps (the reference code's IMP rounds: 2e-5 falls to 1.8e-5 in a round "
                                          "of 10)", choices=("finetuning", "all_rounds"))

    def __post_init__(self):
        super().__post_init__()
        check(0.0 <= self.target_sparsity < 1.0, f"target sparsity must be in [0, 1), got {self.target_sparsity}")
        check(0.0 < self.rate < 1.0, f"{flag('rate')} must be in (0, 1), got {self.rate}")
        check(0.0 <= self.rewind_at < 1.0,
              f"rewind point must be a fraction of training in [0, 1), got {self.rewind_at}")
        for name, unstructured_value in (("importance", "magnitude"), ("rank_within", "model")):
            value = getattr(self, name)
            check(self.structured or value == unstructured_value,
                  f"{flag(name)} {value} ranks heads and neurons: add {flag('structure')} "
                  f"heads_and_neurons (or heads, or neurons)")
        check(not (self.structured and self.include_embeddings),
              f"structured pruning removes heads and neurons, never embeddings: drop {flag('include_embeddings')}")

    @property
    def structured(self) -> bool:
        """True when IMP prunes whole heads and/or neurons rather than single weights."""
        return self.structure != "unstructured"

    def sparsities(self) -> list[float]:
        """Returns every round's sparsity, round 0's (dense) first: [0.0, 0.1, ..., target]."""
        return [0.0] + sparsity_schedule(self.target_sparsity, self.rate, self.schedule)


@dataclass(frozen=True)
class Preset:
    """A named run: TicketConfig values (a flag given on the command line replaces its preset's value) and the
    controls to run at its last sparsity."""

    help: str
    settings: dict
    controls: tuple[str, ...] = ()


PRESETS = {
    # Measured on a 2-core CPU (benchmarks/README.md, "The classroom run"): the levers that keep
    # STS-B's Pearson within seed noise and make 12 fine-tunings fit a lesson.
    "classroom": Preset(
        "STS-B on the real all-MiniLM-L6-v2 with 2 cores: the dense model, IMP to 50% and random pruning at 50%, "
        "3 seeds each, 1 epoch at lr 1e-4 (MiniLM learns STS-B in one; it stays near chance on RTE), the pooler "
        "kept dense (MiniLM never trained it), bf16, batches grouped by length",
        dict(task="stsb", model="all-MiniLM-L6-v2", target_sparsity=0.5, rate=0.25, keep_pooler=True, seeds=[0, 1, 2],
             epochs=1, learning_rate=1e-4, group_by_length=True, precision="bf16"),
        controls=("random_pruning",)),
}


# --- the run: its settings, data, folder and finished rounds --------------------------------------


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


@dataclass
class TicketRun:
    """An IMP run: its settings, data and folder, the rounds done, and the weights a round rewinds to."""

    config: TicketConfig
    task: Task
    folder: Path
    data: tuple  # (train, eval) datasets
    rounds: list[Round]  # finished rounds, in order
    mask: Mask | None  # the mask the next round trains with
    theta_i: dict = field(default_factory=dict)  # seed -> weights after rewind_at of the dense fine-tuning
    rewind_step: int = 0  # the step theta_i was taken at (0: theta_0)

    @property
    def sparsities(self) -> list[float]:
        return self.config.sparsities()


def fresh_model(config: Experiment, task: Task, seed: int):
    """Returns theta_0: the pre-trained model with the task head initialised from `seed`."""
    return model_for_task(config.model, task, seed)


def load_task_data(config: Experiment, task: Task, progress: bool = True):
    """Returns (train, eval) datasets of the task, capped as the config says; `progress` False: no bars."""
    tokenizer = load_tokenizer(config.model)
    train = load_dataset(task, config.data_dir, "train", tokenizer, max_examples=config.max_train_examples,
                         progress=progress)
    evaluation = load_dataset(task, config.data_dir, task.eval_split, tokenizer,
                              max_examples=config.max_eval_examples, progress=progress)
    return train, evaluation


def dense_mask(config: TicketConfig, model) -> Mask:
    """Returns the all-ones mask over the config's prunable set of the model."""
    names = prunable_names(model, include_embeddings=config.include_embeddings, include_pooler=not config.keep_pooler)
    return Mask.dense(model, names)


# --- IMP -----------------------------------------------------------------------------------------


def find_ticket(config: TicketConfig, output_dir: str | Path, progress: bool = True, echo=print) -> list[Round]:
    """Runs IMP to the target sparsity, resuming from `output_dir`'s finished rounds; returns every round.

    `echo` receives the plan (what will run, and an estimate of how long) before any training.
    """
    run = start_run(config, output_dir, progress)
    if echo and len(run.rounds) < len(run.sparsities):
        echo(describe_plan(run))
    while len(run.rounds) < len(run.sparsities):
        save_round(run, imp_round(run, progress))
    return run.rounds


def imp_round(run: TicketRun, progress: bool = True) -> Round:
    """Returns the next round of IMP: rewind and train the subnetwork once per seed, then prune it further."""
    index, mask, started = len(run.rounds), run.mask, time.perf_counter()
    metrics, heads, pruned_model = [], {}, None
    for seed in run.config.seeds:
        # 1. Rewind: the surviving weights back to theta_0 (or theta_i), the pruned ones to zero.
        model = fresh_model(run.config, run.task, seed)  # theta_0: pre-trained, its head drawn from the seed
        rewind(model, rewind_point(run, seed, model), mask)
        # 2. Train: fine-tune the subnetwork; the mask keeps the pruned weights at zero.
        history = train_subnetwork(run, model, mask, seed, progress=progress)
        metrics.append(history.final)
        heads[seed] = head_of(model)
        if pruned_model is None:
            pruned_model = model
    # 3. Prune: drop the smallest surviving weights (or heads and neurons) of the first seed's trained model, globally.
    next_mask = None
    if index + 1 < len(run.sparsities):  # (under torchrun: once, on rank 0, and sent to every rank)
        next_mask = distributed.on_rank_0(prune, run, pruned_model, mask, run.sparsities[index + 1])
    return Round(index, run.sparsities[index], mask, metrics, time.perf_counter() - started, heads, next_mask)


def prune(run: TicketRun, model, mask: Mask, sparsity: float | dict[str, int]) -> Mask:
    """Returns the mask pruned further as the run prunes: its smallest weights, globally (the paper), or with
    config.structure its least important heads and/or neurons (structured.structured_prune).

    `sparsity` is the schedule's fraction, or the exact counts `pruned_counts` gives ({"weights": n},
    or {"heads": n, "neurons": m}) to match another mask.
    """
    config = run.config
    if not config.structured:
        return magnitude_prune(model, mask, sparsity["weights"] / mask.num_total if isinstance(sparsity, dict)
                               else sparsity)
    importance = None
    if config.importance == "gradient":
        batch_size = config.for_task(run.task).batch_size
        device = next(model.parameters()).device
        importance = gradient_importance(model, first_batches(run.task, run.data[0], batch_size, GRADIENT_BATCHES,
                                                              device))
    return structured_prune(model, mask, sparsity, STRUCTURES[config.structure], importance,
                            per_layer=config.rank_within == "layer")


def pruned_counts(run: TicketRun, model, mask: Mask) -> dict[str, tuple[int, int]]:
    """Returns (pruned, total) of the mask in the units the run prunes: {"weights": ...}, or per kind of unit
    {"heads": ..., "neurons": ...} (a structured run's)."""
    if not run.config.structured:
        return {"weights": (mask.num_pruned, mask.num_total)}
    units = Units.of_mask(mask, model.config.num_attention_heads)
    return {kind: (units.num_pruned(kind), units.num_total(kind)) for kind in STRUCTURES[run.config.structure]}


def rewind_point(run: TicketRun, seed: int, theta_0) -> dict:
    """Returns the weights a round starts from: theta_0 (or theta_i after round 0), with the last trained head
    instead of the initial one when the head is not rewound."""
    weights = run.theta_i.get(seed) or snapshot(theta_0)
    if not run.config.rewind_head and run.rounds:
        weights = {**weights, **load_heads(run, len(run.rounds) - 1)[seed]}
    return weights


def train_subnetwork(run: TicketRun, model, mask: Mask, seed: int, rewound: bool = True,
                     progress: bool = True) -> History:
    """Fine-tunes a masked model as every IMP round does; returns its History.

    Round 0, the dense fine-tuning, starts at step 0; a model rewound after it continues from the
    rewind step (theta_i's step i, or 0 for theta_0), and one that is not (standard pruning) starts
    again at 0. Round 0 of a run that rewinds to theta_i keeps its snapshot at that point in run.theta_i.
    With lr_decay="all_rounds", every fine-tuning restarts a linear decay spanning all the run's rounds.
    """
    taking_theta_i = not run.rounds and run.config.rewind_at > 0
    steps = training_steps(run.config, run.task, len(run.data[0].features))
    history = finetune(model, run.task, *run.data, run.config, seed=seed, mask=mask,
                       start_step=run.rewind_step if rewound and run.rounds else 0,
                       lr_decay_steps=steps * len(run.sparsities) if run.config.lr_decay == "all_rounds" else None,
                       snapshot_at=run.config.rewind_at if taking_theta_i else None, progress=progress)
    if taking_theta_i:
        run.theta_i[seed], run.rewind_step = history.snapshot, history.snapshot_step
    return history


def head_of(model) -> dict:
    """Returns a CPU copy of the task head's tensors (the names outside `bert.`)."""
    return {name: tensor for name, tensor in snapshot(model).items() if is_head(name)}


# --- starting, resuming and saving a run ---------------------------------------------------------


def start_run(config: TicketConfig, output_dir: str | Path, progress: bool = True) -> TicketRun:
    """Returns the run ready for its next round: everything is checked (device, data, checkpoint) before the
    output folder is claimed, so a run that cannot start leaves the folder as it was."""
    task = get_task(config.task)
    choose_device(config.device)
    with distributed.rank_0_first():  # data and checkpoints are downloaded once
        data = load_task_data(config, task, progress)
        model = fresh_model(config, task, config.seeds[0])
    folder = claim_output_dir(output_dir, config)
    rounds = finished_rounds(folder)
    run = TicketRun(config, task, folder, data, rounds, mask=None)
    _load_theta_i(run)
    if not rounds:
        run.mask = dense_mask(config, model)
        _warn_if_pooler_is_small(model, run.mask.names())
    elif len(rounds) < len(run.sparsities):
        run.mask = _load_mask(folder, len(rounds))
    return run


def read_run(output_dir: str | Path, progress: bool = True, with_data: bool = True, **placement) -> TicketRun:
    """Returns an IMP run as its folder holds it, writing nothing: its config (with `placement` overrides such as
    data_dir or device), finished rounds and theta_i, and its data unless `with_data` is False."""
    folder = Path(output_dir)
    config = load_config(folder, **placement)
    task = get_task(config.task)
    rounds = finished_rounds(folder)
    run = TicketRun(config, task, folder, (), rounds, mask=None)
    _load_theta_i(run)
    if with_data:
        run.data = load_task_data(config, task, progress)
    return run


def load_config(output_dir: str | Path, **placement) -> TicketConfig:
    """Returns the TicketConfig find_ticket stored in the folder, with `placement` overrides (data_dir, device)."""
    path = Path(output_dir) / "config.json"
    if not path.is_file():
        raise MinilthError(f"{output_dir} is not a find_ticket output folder (no config.json); "
                           f"run `python -m minilth.find_ticket --output {output_dir} ...` first")
    unknown = set(placement) - set(Experiment.PLACEMENT)
    if unknown:
        raise MinilthError(f"only {', '.join(Experiment.PLACEMENT)} of a finished run may change, not {unknown}")
    stored = _read_json(path, f"delete {path} and rerun the find_ticket command that started this run")
    moved = {name: value for name, value in placement.items() if value is not None}
    return from_dict(TicketConfig, {**stored, **moved} if isinstance(stored, dict) else stored, str(path))


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
    path = folder / "config.json"
    if path.exists() and (round_dir(folder, 0) / "metrics.json").exists():
        stored = from_dict(TicketConfig, _read_json(path, f"delete {path} and rerun the command that started this "
                                                          f"run; its finished rounds are kept"), str(path))
        changed = [f.name for f in dataclasses.fields(TicketConfig)
                   if f.name not in Experiment.PLACEMENT and getattr(stored, f.name) != getattr(config, f.name)]
        if changed:
            raise MinilthError(f"{folder} holds a run with a different config ({', '.join(changed)} differ); "
                               f"use another --output folder or the same settings to resume it")


def round_dir(folder: Path, index: int) -> Path:
    """Returns the folder of round `index`: <output>/rounds/round_03."""
    return folder / "rounds" / f"round_{index:02d}"


def finished_rounds(folder: Path) -> list[Round]:
    """Returns the rounds whose metrics.json exists, in order, stopping at the first gap.

    A damaged file is a one-line error that names the file to delete so that the rerun redoes
    the round which wrote it.
    """
    rounds = []
    while (round_dir(folder, len(rounds)) / "metrics.json").exists():
        index = len(rounds)
        path = round_dir(folder, index) / "metrics.json"
        record = _read_json(path, _redo_hint(folder, index))
        if not isinstance(record, dict) or not {"metrics", "sparsity", "seconds"} <= set(record):
            raise MinilthError(f"{path} is not a round record; delete it and rerun: round {index} is trained again")
        rounds.append(Round(index, record["sparsity"], _load_mask(folder, index), record["metrics"], record["seconds"]))
    return rounds


def load_heads(run: TicketRun, index: int) -> dict:
    """Returns {seed: head tensors} trained in round `index`."""
    return _load(round_dir(run.folder, index) / "heads.pt", redo=index, folder=run.folder)


def save_round(run: TicketRun, round_: Round) -> None:
    """Writes a finished round (heads, theta_i, the next round's mask, then metrics.json, which marks it done)
    and makes it the run's latest."""
    folder = round_dir(run.folder, round_.index)
    if not (folder / "mask.pt").exists():
        round_.mask.save(folder / "mask.pt")
    files.save(round_.heads, folder / "heads.pt")
    if round_.index == 0 and run.config.rewind_at:
        files.save({"step": run.rewind_step, "weights": run.theta_i}, run.folder / "theta_i.pt")
    if round_.next_mask is not None:
        round_.next_mask.save(round_dir(run.folder, round_.index + 1) / "mask.pt")
    record = {"round": round_.index, "sparsity": round_.sparsity, "metrics": round_.metrics,
              "seconds": round_.seconds}
    files.write_text(folder / "metrics.json", json.dumps(record, indent=2) + "\n")  # last: the round is done
    run.rounds.append(round_)
    run.mask = round_.next_mask
    write_summary(run.folder, run.rounds, run.task, run.config.structure)


def _load_theta_i(run: TicketRun) -> None:
    """Reads theta_i (written with round 0) into a run that rewinds to it."""
    if run.config.rewind_at and run.rounds:
        stored = _load(run.folder / "theta_i.pt", redo=0, folder=run.folder)
        run.theta_i, run.rewind_step = stored["weights"], stored["step"]


def _redo_hint(folder: Path, index: int) -> str:
    return f"delete {round_dir(folder, index) / 'metrics.json'} and rerun: round {index} is trained again"


def _load_mask(folder: Path, index: int) -> Mask:
    """Round `index`'s mask; written by round index-1's pruning (round 0's by itself)."""
    try:
        return Mask.load(round_dir(folder, index) / "mask.pt")
    except MinilthError as error:
        raise MinilthError(f"{error}; {_redo_hint(folder, max(0, index - 1))} and re-creates it") from None


def _load(path: Path, redo: int, folder: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a missing or damaged zip
        raise MinilthError(f"{path} is missing or damaged ({type(error).__name__}); "
                           f"{_redo_hint(folder, redo)} and re-creates it") from None


def _read_json(path: Path, fix: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MinilthError(f"{path} is damaged ({type(error).__name__}); {fix}") from None


def _warn_if_pooler_is_small(model, names: list[str]) -> None:
    # all-MiniLM-L6-v2's pooler is unused by sentence-transformers, which averages the token vectors, and
    # its weights are small (mean |w| 0.007 against 0.03-0.07 in the encoder):
    # IMP pruned 99.9% of it at 50% sparsity, which cut the classifier off and collapsed every seed.
    ratio = pooler_magnitude_ratio(model, names)
    if ratio is not None and ratio < 1 / 3:
        logger.warning(f"warning: the pooler's weights are {1 / ratio:.0f}x smaller than the encoder's, so global "
                       f"magnitude pruning removes it first; --keep-pooler leaves it dense")


# --- the plan ------------------------------------------------------------------------------------


def describe_plan(run: TicketRun) -> str:
    """Returns a few lines saying what the run will do and about how long it will take."""
    config, task, (train, evaluation) = run.config, run.task, run.data
    settings = config.for_task(task)
    steps = training_steps(settings, task, len(train.features))
    # Each epoch ends with a pass over the eval set; a forward pass costs about a third of a training step.
    eval_steps = math.ceil(settings.epochs) * len(evaluation.features) / settings.batch_size / 3
    done = len(run.rounds)
    runs = (len(run.sparsities) - done) * len(config.seeds)
    seconds = runs * (steps + eval_steps) * seconds_per_step(config, task, train)
    resumed = f" (resuming: {done} of {len(run.sparsities)} rounds done)" if done else ""
    rewinding = "theta_0" if not config.rewind_at else f"{100 * config.rewind_at:g}% of training"
    return "\n".join([
        f"IMP on {task.display_name} from {config.model}: {len(train.features)} training / "
        f"{len(evaluation.features)} eval features, {task.ticket_metric} decides",
        f"rounds at sparsity {', '.join(f'{100 * s:.0f}%' for s in run.sparsities)}{resumed}"
        + (f": of the {' and of the '.join(STRUCTURES[config.structure])}, ranked by {config.importance}"
           + (" within each layer" if config.rank_within == "layer" else "")
           if config.structured else ""),
        f"{runs} fine-tunings x {steps} steps (batch {settings.batch_size}, {settings.epochs:g} epochs, "
        f"seeds {config.seeds}), rewinding to {rewinding}",
        f"estimated time: {_duration(seconds)} on {choose_device(config.device)}; output: {run.folder}"])


def seconds_per_step(config: Experiment, task: Task, train, timed_steps: int = 3) -> float:
    """Times a few fine-tuning steps on randomly drawn examples (the first step, a warm-up, not counted).

    Random, not the first ones: files are often ordered by source, e.g. STS-B opens with its
    shortest sentences, which made an estimate from the first batches half the real time.
    """
    batch_size = config.for_task(task).batch_size
    sample = copy.copy(train)
    count = min(len(train.features), batch_size * (timed_steps + 1))
    sample.features = random.Random(0).sample(train.features, count)
    model = fresh_model(config, task, config.seeds[0])
    times = []
    finetune(model, task, sample, None, config, epochs=1, progress=False,
             on_step=lambda step, model: times.append(time.perf_counter()))
    return (times[-1] - times[0]) / max(1, len(times) - 1)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"about {seconds:.0f} s"
    if seconds < 7200:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


# --- the verdict ----------------------------------------------------------------------------------


def summarize(rounds: list[Round], task: Task, structure: str = "unstructured") -> dict:
    """Returns the table of rounds and the highest sparsity that is a winning ticket under both definitions.

    A round's `sparsity` is the schedule's: of the prunable weights, or in a structured run of the
    heads and of the neurons; `actual_sparsity` is always its mask's fraction of prunable weights.

    `within_noise` (the paper's definition): the mean metric is at least the dense mean minus the
    dense model's noise. `at_least_dense`: the mean metric is at least the dense mean. The noise is
    one standard deviation of the dense runs over seeds (the paper's rule); with one seed, which
    shows no spread, it is the dev set's own sampling error of the dense run. A dense model within
    noise of chance learned nothing, and then no sparsity is called a ticket: `verdict` says why.
    """
    metric = task.ticket_metric
    dense = describe([m[metric] for m in rounds[0].metrics])
    noise, rule = _noise(rounds[0].metrics, metric, dense)
    chance = rounds[0].metrics[0].get(f"{metric}_chance")
    learned = chance is None or dense["mean"] - chance > noise
    table = []
    for r in rounds:
        stats = describe([m[metric] for m in r.metrics])
        table.append({"round": r.index, "sparsity": r.sparsity, "actual_sparsity": r.mask.sparsity,
                      "metric": metric, "mean": stats["mean"], "std": stats["std"], "min": stats["min"],
                      "max": stats["max"], "seeds": stats["n"],
                      "within_noise": learned and stats["mean"] >= dense["mean"] - noise,
                      "at_least_dense": learned and stats["mean"] >= dense["mean"], "seconds": round(r.seconds, 1)})
    verdict = (f"the dense model learned: {dense['mean']:.4f} against {chance:.4f} for a model that learned nothing"
               if chance is not None else "no chance level is known for this task")
    if not learned:
        verdict = (f"undecided: the dense model's {dense['mean']:.4f} is within noise ({noise:.4f}) of the "
                   f"{chance:.4f} a model that learned nothing scores, so matching it says nothing")
    return {"task": task.name, "structure": structure, "metric": metric, "dense_mean": dense["mean"],
            "dense_std": dense["std"],
            "noise": noise, "noise_rule": rule, "chance": chance, "verdict": verdict,
            "ticket_within_noise": _highest(table, "within_noise"),
            "ticket_at_least_dense": _highest(table, "at_least_dense"), "rounds": table}


def _noise(dense_metrics: list[dict], metric: str, dense: dict) -> tuple[float, str]:
    """The dense model's noise and the rule that gave it: the std over seeds, or with one seed the dev set's."""
    if dense["n"] > 1:
        return dense["std"], f"one std of the dense runs over {dense['n']} seeds"
    stderr = dense_metrics[0].get(f"{metric}_se")
    if stderr is None:
        return 0.0, "one seed and no sampling error for this task: no noise allowed"
    return stderr, "one seed: the dev set's sampling error of the dense run"


def _highest(table: list[dict], key: str) -> float | None:
    matching = [row["sparsity"] for row in table if row[key] and row["round"] > 0]
    return max(matching) if matching else None


def verdict_lines(summary: dict) -> list[str]:
    """Returns the verdict in words: both ticket definitions, the noise and its rule, and whether the dense
    model learned at all."""
    percent = lambda s: "none" if s is None else f"{100 * s:.0f}% sparsity"  # noqa: E731
    return [f"winning ticket (within noise of dense, {summary['noise']:.4f}: {summary['noise_rule']}): "
            f"{percent(summary['ticket_within_noise'])}; (at least dense): {percent(summary['ticket_at_least_dense'])}",
            summary["verdict"]]


def write_summary(output_dir: Path, rounds: list[Round], task: Task, structure: str = "unstructured",
                  controls: dict | None = None) -> dict:
    """Writes summary.json, summary.csv and (with matplotlib) summary.png; returns the summary.

    `controls` ({control: [result, ...]}, as controls.run_controls returns) are drawn beside the
    IMP curve at their sparsity, as the paper's figures show them. The x axis is the fraction of
    prunable weights removed, so a structured run and its controls share the unstructured scale.
    """
    summary = summarize(rounds, task, structure)
    files.write_text(output_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_csv(summary["rounds"], output_dir / "summary.csv")
    points = {name: [(r["sparsity"], r["metrics"][summary["metric"]]) for r in results]
              for name, results in (controls or {}).items()}
    title = f"{task.display_name}: IMP subnetworks against the dense model"
    if not plot_sparsity_curve(summary, points, output_dir / "summary.png", title):
        logger.warning("summary.png not written: matplotlib is not installed (pip install matplotlib)")
    return summary


def format_table(summary: dict) -> str:
    """Returns the rounds as an aligned text table for the terminal (a structured run's with the weights removed)."""
    structured = summary.get("structure", "unstructured") != "unstructured"
    header = ["round", "units removed" if structured else "sparsity"] + (["weights removed"] if structured else [])
    header += [summary["metric"], "std", "min", "max", "ticket?"]
    rows = [[str(r["round"]), f"{100 * r['sparsity']:.1f}%"] + ([f"{100 * r['actual_sparsity']:.1f}%"] if structured
                                                                else [])
            + [f"{r[k]:.4f}" for k in ("mean", "std", "min", "max")]
            + ["dense" if r["round"] == 0 else ("yes" if r["within_noise"] else "no")] for r in summary["rounds"]]
    return render_table([header] + rows)
