"""Finding a lottery ticket: iterative magnitude pruning (IMP) with rewinding, as readable steps.

    theta_0 --fine-tune--> theta_T --prune 10%--> m_1 --rewind to m_1 * theta_0--> fine-tune --> ...

Round 0 fine-tunes the dense model: the baseline a ticket is judged against (same seeds, same
data). Each later round prunes the weights of the previous round's fine-tuned model (seed
`seeds[0]`), rewinds the survivors, and fine-tunes once per seed. Every round writes its mask
and metrics before the next begins, so an interrupted run resumes from the last finished round.

What minilth rewinds: the whole model, encoder and task head, to its state before fine-tuning
(theta_0: the pre-trained encoder and the head as initialised by the seed). The reference
code keeps the head trained in the previous round instead; `rewind_head=False` does that.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import logging
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import files
from .datasets import load_dataset
from .errors import MinilthError
from .prune import Mask, is_head, magnitude_prune, pooler_magnitude_ratio, prunable_names, rewind, sparsity_schedule
from .report import describe, new_figure, save_figure
from .tasks import Task, get_task
from .train import choose_device, finetune, model_for_task

logger = logging.getLogger(__name__)


@dataclass
class TicketConfig:
    """Everything that defines an IMP run; stored in the output folder and checked on resume."""

    task: str
    model: str = "bert-base-uncased"  # a checkpoint name or folder
    data_dir: str | None = None  # the folder holding the task folders; None: $MINILTH_DATA_DIR, else data/glue
    target_sparsity: float = 0.9  # the last round's sparsity over the prunable weights
    schedule: str = "original"  # "original": 10% of the original weights per round; "remaining": 10% of the rest
    rate: float = 0.1  # fraction pruned per round
    rewind_at: float = 0.0  # 0: rewind to theta_0 (pre-trained); 0.05: to the weights after 5% of fine-tuning
    rewind_head: bool = True  # rewind the task head too (the reference code does not)
    include_embeddings: bool = False  # prune the embedding matrices as well (the paper does not)
    prune_pooler: bool = True  # the paper prunes the pooler; False leaves it dense (see find_ticket --keep-pooler)
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: float | None = None  # None: the task's (the paper's) value
    learning_rate: float | None = None
    batch_size: int | None = None
    max_train_examples: int | None = None  # a cap for quick classroom runs
    max_eval_examples: int | None = None
    group_by_length: bool = False  # batches of similar lengths: about 2x faster on RTE, not what the paper did
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self):
        if not 0.0 <= self.target_sparsity < 1.0:
            raise MinilthError(f"target sparsity must be in [0, 1), got {self.target_sparsity}")
        if not 0.0 <= self.rewind_at < 1.0:
            raise MinilthError(f"rewind point must be a fraction of training in [0, 1), got {self.rewind_at}")
        if not self.seeds:
            raise MinilthError("give at least one seed")
        get_task(self.task)  # an unknown task fails here, before any work

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Round:
    """One round of IMP: its sparsity, its mask, and the metrics of each seed's fine-tuning."""

    index: int
    sparsity: float  # the schedule's target; the mask's own is within half a weight of it
    mask: Mask
    metrics: list[dict]  # one per seed
    seconds: float = 0.0

    def mean(self, metric: str) -> float:
        return statistics.fmean(m[metric] for m in self.metrics)


# --- the steps of one round, each usable on its own in a tutorial ---------------------------------


def fresh_model(config: TicketConfig, task: Task, seed: int):
    """Returns theta_0: the pre-trained model with the task head initialised from `seed`."""
    return model_for_task(config.model, task, seed)


def train_round(config: TicketConfig, task: Task, data, mask: Mask, seed: int,
                rewind_to: dict | None = None, progress: bool = True):
    """Rewinds a fresh model to theta_0 (or `rewind_to`), applies the mask, fine-tunes; returns (model, history)."""
    model = fresh_model(config, task, seed)
    if rewind_to is not None:
        rewind(model, rewind_to, mask)
    mask.apply_to(model)
    train_data, eval_data = data
    history = finetune(model, task, train_data, eval_data, seed=seed, mask=mask, epochs=config.epochs,
                       learning_rate=config.learning_rate, batch_size=config.batch_size, device=config.device,
                       precision=config.precision, snapshot_at=config.rewind_at or None,
                       group_by_length=config.group_by_length, progress=progress)
    return model, history


def next_mask(trained_model, mask: Mask, sparsity: float) -> Mask:
    """Prunes the smallest-magnitude surviving weights of the trained model, globally, to `sparsity`."""
    return magnitude_prune(trained_model, mask, sparsity)


# --- the loop -------------------------------------------------------------------------------------


def find_ticket(config: TicketConfig, output_dir: str | Path, progress: bool = True, echo=print) -> list[Round]:
    """Runs IMP to the target sparsity, resuming from `output_dir` if it holds a finished round; returns the rounds.

    `echo` receives the plan (what will run, and an estimate of how long) before any training.
    """
    output_dir = Path(output_dir)
    task = get_task(config.task)
    _claim_output_dir(output_dir, config)
    data = load_task_data(config, task, progress)
    sparsities = [0.0] + sparsity_schedule(config.target_sparsity, config.rate, config.schedule)

    rounds = load_finished_rounds(output_dir)
    if echo and len(rounds) < len(sparsities):
        echo(describe_plan(config, task, data, sparsities, len(rounds), output_dir))
    theta_i = _load(output_dir / "theta_i.pt") if config.rewind_at else {}
    for index in range(len(rounds), len(sparsities)):
        started = time.perf_counter()
        mask = _mask_for_round(output_dir, index, config, task)
        trained_heads = _load(_round_dir(output_dir, index - 1) / "heads.pt") if index else {}
        metrics, heads, pruning_model = [], {}, None
        for seed in config.seeds:
            start_from = {**theta_i.get(seed, {})}
            if not config.rewind_head:
                start_from.update(trained_heads.get(seed, {}))
            model, history = train_round(config, task, data, mask, seed, start_from or None, progress)
            metrics.append(history.final)
            heads[seed] = {k: v.detach().cpu() for k, v in model.state_dict().items() if is_head(k)}
            if index == 0 and config.rewind_at:
                theta_i[seed] = history.snapshot
            if seed == config.seeds[0]:
                pruning_model = model
        if index == 0 and config.rewind_at:
            files.save(theta_i, output_dir / "theta_i.pt")
        files.save(heads, _round_dir(output_dir, index) / "heads.pt")
        if index + 1 < len(sparsities):
            next_mask(pruning_model, mask, sparsities[index + 1]).save(_round_dir(output_dir, index + 1) / "mask.pt")
        rounds.append(Round(index, sparsities[index], mask, metrics, time.perf_counter() - started))
        _write_round(output_dir, rounds[-1])
        write_summary(output_dir, rounds, task)
    return rounds


def describe_plan(config: TicketConfig, task: Task, data, sparsities: list[float], done: int,
                  output_dir: Path) -> str:
    """Returns a few lines saying what the run will do and about how long it will take."""
    train, evaluation = data
    batch_size = config.batch_size or task.batch_size
    epochs = config.epochs if config.epochs is not None else task.epochs
    steps = math.ceil(epochs * math.ceil(len(train.features) / batch_size))
    # Each epoch ends with a pass over the eval set; a forward pass costs about a third of a training step.
    eval_steps = math.ceil(epochs) * len(evaluation.features) / batch_size / 3
    runs = (len(sparsities) - done) * len(config.seeds)
    seconds = runs * (steps + eval_steps) * seconds_per_step(config, task, train)
    resumed = f" (resuming: {done} of {len(sparsities)} rounds done)" if done else ""
    return "\n".join([
        f"IMP on {task.display_name} from {config.model}: {len(train.features)} training / "
        f"{len(evaluation.features)} eval features, {task.ticket_metric} decides",
        f"rounds at sparsity {', '.join(f'{100 * s:.0f}%' for s in sparsities)}{resumed}",
        f"{runs} fine-tunings x {steps} steps (batch {batch_size}, {epochs:g} epochs, seeds {config.seeds}), "
        f"rewinding to {'theta_0' if not config.rewind_at else f'{100 * config.rewind_at:g}% of training'}",
        f"estimated time: {_duration(seconds)} on {choose_device(config.device)}; output: {output_dir}"])


def seconds_per_step(config: TicketConfig, task: Task, train, timed_steps: int = 3) -> float:
    """Times a few fine-tuning steps on randomly drawn examples (the first step, a warm-up, not counted).

    Random, not the first ones: files are often ordered by source, e.g. STS-B opens with its
    shortest sentences, which made an estimate from the first batches half the real time.
    """
    batch_size = config.batch_size or task.batch_size
    sample = copy.copy(train)
    count = min(len(train.features), batch_size * (timed_steps + 1))
    sample.features = random.Random(0).sample(train.features, count)
    model = fresh_model(config, task, config.seeds[0])
    times = []
    finetune(model, task, sample, None, epochs=1, batch_size=batch_size, device=config.device,
             precision=config.precision, group_by_length=config.group_by_length, progress=False,
             on_step=lambda step, model: times.append(time.perf_counter()))
    return (times[-1] - times[0]) / max(1, len(times) - 1)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"about {seconds:.0f} s"
    if seconds < 7200:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def load_task_data(config: TicketConfig, task: Task, progress: bool = True):
    """Returns (train, eval) datasets of the task, capped as the config says; `progress` False: no bars."""
    from .weights import load_tokenizer

    tokenizer = load_tokenizer(config.model)
    train = load_dataset(task, config.data_dir, "train", tokenizer, max_examples=config.max_train_examples,
                         progress=progress)
    evaluation = load_dataset(task, config.data_dir, task.eval_split, tokenizer,
                              max_examples=config.max_eval_examples, progress=progress)
    return train, evaluation


def dense_mask(config: TicketConfig, model) -> Mask:
    """Returns the all-ones mask over the config's prunable set of the model."""
    names = prunable_names(model, include_embeddings=config.include_embeddings, include_pooler=config.prune_pooler)
    return Mask.dense(model, names)


def _warn_if_pooler_is_small(model, names: list[str]) -> None:
    # all-MiniLM-L6-v2's pooler is unused by sentence-transformers, which averages the token vectors, and
    # its weights are small (mean |w| 0.007 against 0.03-0.07 in the encoder):
    # IMP pruned 99.9% of it at 50% sparsity, which cut the classifier off and collapsed every seed.
    ratio = pooler_magnitude_ratio(model, names)
    if ratio is not None and ratio < 1 / 3:
        logger.warning(f"warning: the pooler's weights are {1 / ratio:.0f}x smaller than the encoder's, so global "
                       f"magnitude pruning removes it first; --keep-pooler (prune_pooler=False) leaves it dense")


def _mask_for_round(output_dir: Path, index: int, config: TicketConfig, task: Task) -> Mask:
    """Round 0 is dense; round k's mask was written when round k-1 finished."""
    if index == 0:
        model = fresh_model(config, task, config.seeds[0])
        mask = dense_mask(config, model)
        _warn_if_pooler_is_small(model, mask.names())
        return mask
    return Mask.load(_round_dir(output_dir, index) / "mask.pt")


# --- the output folder ----------------------------------------------------------------------------


def _round_dir(output_dir: Path, index: int) -> Path:
    path = output_dir / "rounds" / f"round_{index:02d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claim_output_dir(output_dir: Path, config: TicketConfig) -> None:
    """Writes config.json into a new folder, or checks that an existing run used the same config."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "config.json"
    if path.exists():
        # A run written before a field existed ran with that field's default.
        defaults = {f.name: f.default for f in dataclasses.fields(TicketConfig) if f.default is not dataclasses.MISSING}
        stored = {**defaults, **json.loads(path.read_text())}
        if stored != config.to_dict():
            changed = sorted(k for k in set(stored) | set(config.to_dict()) if stored.get(k) != config.to_dict().get(k))
            raise MinilthError(f"{output_dir} holds a run with a different config ({', '.join(changed)} differ); "
                               f"use another --output folder or the same settings to resume it")
        return
    files.write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")


def load_finished_rounds(output_dir: Path) -> list[Round]:
    """Returns the rounds whose metrics.json exists, in order, stopping at the first gap."""
    rounds = []
    while (output_dir / "rounds" / f"round_{len(rounds):02d}" / "metrics.json").exists():
        folder = output_dir / "rounds" / f"round_{len(rounds):02d}"
        record = json.loads((folder / "metrics.json").read_text())
        mask = Mask.load(folder / "mask.pt")
        rounds.append(Round(record["round"], record["sparsity"], mask, record["metrics"], record["seconds"]))
    return rounds


def _write_round(output_dir: Path, round_: Round) -> None:
    folder = _round_dir(output_dir, round_.index)
    if not (folder / "mask.pt").exists():
        round_.mask.save(folder / "mask.pt")
    record = {"round": round_.index, "sparsity": round_.sparsity, "metrics": round_.metrics,
              "seconds": round_.seconds}
    files.write_text(folder / "metrics.json", json.dumps(record, indent=2) + "\n")  # written last: the round is done


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True) if path.exists() else {}


# --- the verdict ----------------------------------------------------------------------------------


def summarize(rounds: list[Round], task: Task) -> dict:
    """Returns the table of rounds and the highest sparsity that is a winning ticket under both definitions.

    `within_std`: the mean metric is at least the dense mean minus one standard deviation of the
    dense runs (the paper's definition; with one seed the std is 0). `at_least_dense`: the mean
    metric is at least the dense mean.
    """
    metric = task.ticket_metric
    dense = describe([m[metric] for m in rounds[0].metrics])
    dense_mean, dense_std = dense["mean"], dense["std"]
    table = []
    for r in rounds:
        stats = describe([m[metric] for m in r.metrics])
        table.append({"round": r.index, "sparsity": r.sparsity, "actual_sparsity": r.mask.sparsity,
                      "metric": metric, "mean": stats["mean"], "std": stats["std"], "min": stats["min"],
                      "max": stats["max"], "seeds": stats["n"], "within_std": stats["mean"] >= dense_mean - dense_std,
                      "at_least_dense": stats["mean"] >= dense_mean, "seconds": round(r.seconds, 1)})
    return {"task": task.name, "metric": metric, "dense_mean": dense_mean, "dense_std": dense_std,
            "ticket_within_std": _highest(table, "within_std"),
            "ticket_at_least_dense": _highest(table, "at_least_dense"), "rounds": table}


def _highest(table: list[dict], key: str) -> float | None:
    matching = [row["sparsity"] for row in table if row[key] and row["round"] > 0]
    return max(matching) if matching else None


def write_summary(output_dir: Path, rounds: list[Round], task: Task) -> dict:
    """Writes summary.json, summary.csv and (with matplotlib) summary.png; returns the summary."""
    summary = summarize(rounds, task)
    files.write_text(output_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(summary["rounds"][0]))
    writer.writeheader()
    writer.writerows(summary["rounds"])
    files.write_text(output_dir / "summary.csv", buffer.getvalue())
    plot_summary(summary, output_dir / "summary.png")
    return summary


def plot_summary(summary: dict, path: Path) -> bool:
    """Plots the metric against sparsity with the dense band; returns False when matplotlib is absent."""
    fig = new_figure(figsize=(5, 3.5))
    if fig is None:
        return False
    ax = fig.subplots()
    rows = summary["rounds"]
    x = [100 * r["sparsity"] for r in rows]
    y = [r["mean"] for r in rows]
    err = [r["std"] for r in rows]
    band = (summary["dense_mean"] - summary["dense_std"], summary["dense_mean"] + summary["dense_std"])
    ax.axhspan(*band, color="tab:gray", alpha=0.2, label="dense ± 1 std")
    ax.axhline(summary["dense_mean"], color="tab:gray", lw=1)
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="IMP subnetwork")
    ax.set_xlabel("sparsity of the prunable weights (%)")
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"{get_task(summary['task']).display_name}: IMP subnetworks against the dense model")
    ax.legend(loc="best")
    save_figure(fig, path)
    return True


def format_table(summary: dict) -> str:
    """Returns the rounds as a fixed-width text table for the terminal."""
    lines = [f"{'round':>5} {'sparsity':>8} {summary['metric']:>10} {'std':>7} {'min':>7} {'max':>7}  ticket?"]
    for r in summary["rounds"]:
        verdict = "dense" if r["round"] == 0 else ("yes" if r["within_std"] else "no")
        lines.append(f"{r['round']:>5} {100 * r['sparsity']:>7.1f}% {r['mean']:>10.4f} {r['std']:>7.4f} "
                     f"{r['min']:>7.4f} {r['max']:>7.4f}  {verdict}")
    return "\n".join(lines)
