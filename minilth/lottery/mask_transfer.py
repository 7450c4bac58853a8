"""Transfer: the mask found on task A, applied to theta_0, fine-tuned on task B with a fresh head.

Only the mask moves. The target model is the pre-trained checkpoint with a head for the target
task; no weight of the source run is ever read (from a find_ticket folder, only a round's mask.pt).

    mask = load_mask("runs/mlm/rounds/round_07/mask.pt")
    transfer(mask, get_task("rte"), Experiment(task="rte", model="bert-base-uncased"))  # {'acc': ...}

    python -m minilth.transfer --mask runs/rte runs/mrpc --sparsity 0.5 --tasks rte mrpc stsb cola \\
        --model path/to/bert --output runs/transfer

fills a source x target matrix (plus each target's dense baseline) in transfer.json, one cell
at a time (rerun to resume), then writes transfer.csv, the heatmap transfer_heatmap.png (with
its CSV) and prints the matrix.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .. import files
from ..checkpoints import load_mask, resolve_checkpoint
from ..checkpoints.masks import mask_digest
from ..config import Experiment
from ..data import TASKS, Task, get_task
from ..data.folders import task_file
from ..errors import MinilthError
from ..prune import Mask, MaskError, is_pooler, named_tensors, prunable_names
from ..scale import distributed
from ..schemas import (TRANSFER_RECORD, FileError, check as check_schema, metrics as metrics_schema, read_json,
                       round_record)
from ..settings import check, flag, setting
from ..train import finetune, model_for_task
from .report import describe, differences, percent_scale, render_table, to_json, transfer_heatmap, write_csv
from .run_folder import load_config, load_task_data, round_dir
from .task_settings import TASK_SETTINGS_HELP, for_task, parse_task_settings
from .verdict import is_ticket, separation

logger = logging.getLogger(__name__)

DENSE = "dense"  # the row of dense baselines: the full pre-trained model fine-tuned on each target


class TransferError(MinilthError, ValueError):
    """A mask source that cannot be read or chosen, or a transfer output folder with other settings."""


@dataclass(kw_only=True)
class TransferSettings:
    """masks and targets"""

    masks: list[str] = setting(help="mask.pt files or find_ticket output folders (several fill a source x target "
                                    "matrix)")
    tasks: list[str] = setting(help=f"target tasks, any of: {', '.join(TASKS)}")
    labels: list[str] | None = setting(None, "a name per mask source (default: folder@sparsity)")
    task_settings: list[str] | None = setting(None, TASK_SETTINGS_HELP)
    control: str | None = setting(None, "the label of a control row (a random mask of the same sparsity): every "
                                        "other row is compared with it seed by seed, and with the dense model")

    def __post_init__(self):
        self.tasks = [get_task(task).name for task in self.tasks]
        check(len(set(self.tasks)) == len(self.tasks), f"{flag('tasks')} names a task twice: {' '.join(self.tasks)}")
        check(self.labels is None or (len(self.labels) == len(self.masks) and len(set(self.labels)) == len(self.labels)
                                      and DENSE not in self.labels and all(label.strip() for label in self.labels)),
              f"give one distinct label per mask source (and none called '{DENSE}') with {flag('labels')}")
        check(self.control is None or self.control in (self.labels or []),
              f"{flag('control')} names a row by its label: give the labels with {flag('labels')} and one of them")


# --- moving a mask ---------------------------------------------------------------------------------


def _bare(name: str) -> str:
    return name.removeprefix("bert.")


def transfer_mask(mask: Mask, target_model) -> Mask:
    """Returns the mask renamed and trimmed for the target model; raises MaskError if it was made for another model.

    The one difference allowed is the pooler: a mask found with --keep-pooler has no pooler entry
    and leaves the target's pooler dense, and a target model without a pooler (a bare encoder)
    drops the mask's. The `bert.` prefix follows the target. Every other prunable matrix of the
    target must be in the mask with the same shape.
    """
    tensors = named_tensors(target_model)
    by_bare = {_bare(name): name for name in tensors}
    moved, missing_in_target = {}, []
    for name, flag in mask.items():
        target_name = by_bare.get(_bare(name))
        if target_name is None:
            if not is_pooler(name):
                missing_in_target.append(name)
            continue
        moved[target_name] = flag
    embeddings = any("embeddings" in name for name in mask)
    wanted = prunable_names(target_model, include_embeddings=embeddings)
    uncovered = [name for name in wanted if name not in moved and not is_pooler(name)]
    problems = []
    if missing_in_target:
        problems.append(f"{len(missing_in_target)} mask entries the target lacks (e.g. {missing_in_target[0]})")
    if uncovered:
        problems.append(f"{len(uncovered)} prunable target matrices the mask lacks (e.g. {uncovered[0]})")
    if problems or not moved:
        raise MaskError(f"mask was made for another model: {'; '.join(problems) or 'no names in common'}; "
                        f"transfer masks between runs of the same checkpoint")
    moved = Mask(moved)
    moved.check_fits(target_model)  # shapes: same message as prune's
    return moved


def transfer(mask: Mask | None, task: Task, config: Experiment, seed: int = 0, data=None,
             progress: bool = True) -> dict:
    """Returns the target task's metrics of theta_0 (fresh head from `seed`) under the mask, fine-tuned.

    `config` gives the checkpoint, data folder and fine-tuning settings; its task is replaced by
    the target. `data` (train, eval) may be passed to avoid reading the target's files again.
    No mask (None) fine-tunes the dense model: the target's baseline.
    """
    config = dataclasses.replace(config, task=task.name)
    checkpoint = resolve_checkpoint(config.model)
    data = data or load_task_data(config, task, checkpoint, progress)
    model = model_for_task(checkpoint, task, seed)
    moved = None if mask is None else transfer_mask(mask, model)
    if moved is not None:
        moved.apply_to(model)
    return finetune(model, task, *data, config, seed=seed, mask=moved, progress=progress).final


# --- reading masks from files or find_ticket folders -----------------------------------------------


def find_mask(source: str | Path, sparsity: float | None = None) -> tuple[Mask, Path]:
    """Returns (mask, its file): a mask file, or a find_ticket folder's finished round at `sparsity` (default: the
    sparsest).

    In a folder only the finished rounds' mask.pt files are read, nothing else of the run.
    """
    source = Path(source)
    if source.is_file():
        return load_mask(source), source
    if not source.is_dir():
        raise TransferError(f"mask source {source} does not exist; give a mask.pt file or a find_ticket output folder")
    paths = [path for path in sorted(source.glob("rounds/round_*/mask.pt")) if (path.parent / "metrics.json").exists()]
    if not paths:
        raise TransferError(f"{source} holds no finished round (rounds/round_*/mask.pt with its metrics.json); give a "
                            f"mask file or a find_ticket folder")
    masks = [(mask, path) for mask, path in ((load_mask(path), path) for path in paths)
             if mask.num_pruned > 0]  # round 0's dense mask is no ticket
    if not masks:
        raise TransferError(f"{source} holds only the dense round's mask; let find_ticket prune at least one round")
    if sparsity is None:
        return max(masks, key=lambda pair: pair[0].num_pruned)
    for mask, path in masks:
        if abs(mask.num_pruned - sparsity * mask.num_total) <= 0.5:  # the count IMP makes: round(s * total)
            return mask, path
    have = ", ".join(f"{m.sparsity:.2f}" for m, _ in masks)
    raise TransferError(f"{source} has no mask at sparsity {sparsity:g} (it has {have}); pick one of those")


def source_label(path: Path, mask: Mask) -> str:
    """Returns a short name for a mask: its run folder's name and sparsity, e.g. 'rte@50%'."""
    run = path.parents[2].name if path.parent.parent.name == "rounds" else path.stem
    return f"{run}@{100 * mask.sparsity:.0f}%"


# --- the matrix ------------------------------------------------------------------------------------


def transfer_matrix(sources: list[str | Path], tasks: list[Task], config: Experiment, output_dir: str | Path,
                    sparsity=None, seeds: list[int] | None = None, labels: list[str] | None = None,
                    task_settings=None, progress: bool = True, echo=print) -> dict:
    """Fills transfer.json in output_dir with every (source, target, seed) and each target's dense baseline; returns it.

    `sparsity` picks each source folder's round: None (its sparsest), a number, or a RoundChoice
    (by the source run's task). `task_settings` ({task: {setting: value}} or TASK:NAME=VALUE
    strings) gives a target fine-tuning settings of its own. Every run is written as soon as it is
    done and skipped when found, so a rerun resumes. Masks and targets are all checked (names,
    shapes) before any training. A cell that an IMP source folder already trained, with the same
    settings (its own task's mask at that round, or its dense round), is read from the folder, not
    trained again (`already_trained`).
    """
    output_dir = Path(output_dir)
    seeds = list(seeds or config.seeds)
    task_settings = parse_task_settings(task_settings, [task.name for task in tasks])
    found = [find_mask(source, _sparsity_of(source, sparsity)) for source in sources]
    labels = labels or [source_label(path, mask) for mask, path in found]
    if len(labels) != len(found) or len(set(labels)) != len(labels) or DENSE in labels:
        raise TransferError(f"give one distinct label per source (and none called '{DENSE}'), got {labels}; "
                            f"pass --labels")
    masks = dict(zip(labels, (mask for mask, _ in found)))
    _check_all_fit(masks, tasks, config, seeds[0])
    for target in tasks:  # every target's files are there (or downloaded) before any training
        for split in ("train", target.eval_split):
            task_file(target, config.data_dir, split)
    record = _open_record(output_dir, config, masks, found, labels, task_settings)
    rounds = dict(zip(labels, (path.parent for _, path in found)))  # a source's round folder (or its mask file's)
    todo = [(s, t.name, seed) for t in tasks for s in [DENSE, *labels] for seed in seeds
            if _key(s, t.name, seed) not in record["runs"]]
    if echo:
        echo(f"transfer {len(labels)} mask(s) to {', '.join(t.name for t in tasks)} with seeds {seeds} "
             f"(+ dense baselines): "
             f"{len(todo)} fine-tunings to do; results in {output_dir}")
    checkpoint = resolve_checkpoint(config.model)
    for target in tasks:
        task_config = for_task(config, target.name, task_settings)
        pending = [(s, seed) for s, t, seed in todo if t == target.name]
        trained = {(s, seed): already_trained(rounds.values() if s == DENSE else [rounds[s]], s == DENSE, seed,
                                              task_config) for s, seed in pending}
        with distributed.rank_0_first():
            data = None if all(trained.values()) else load_task_data(task_config, target, checkpoint, progress)
        for source, seed in pending:
            started, cell = time.perf_counter(), {"source": source, "target": target.name, "seed": seed}
            if trained[source, seed]:
                path, cell["metrics"] = trained[source, seed]
                cell["read_from"] = str(path)
            else:
                cell["metrics"] = transfer(None if source == DENSE else masks[source], target, task_config, seed, data,
                                           progress)
            record["runs"][_key(source, target.name, seed)] = {**cell,
                                                               "seconds": round(time.perf_counter() - started, 1)}
            files.write_text(output_dir / "transfer.json", to_json(record))
    record["tasks"], record["labels"], record["seeds"] = [t.name for t in tasks], labels, seeds
    return record


def already_trained(round_folders, dense: bool, seed: int, config: Experiment) -> tuple[Path, dict] | None:
    """Returns (metrics.json, the seed's metrics) of a cell an IMP run already trained, or None.

    A transfer cell fine-tunes theta_0 of the target, with a fresh head drawn from the seed, under
    the mask: exactly what an IMP round rewinding to theta_0 did when the mask is its own, on its
    own task, with the same fine-tuning settings (tests/test_transfer.py shows the two equal to the
    last digit). The dense baseline is the run's round 0 (`dense`: any of `round_folders`' runs).
    """
    for folder in round_folders:
        run_folder = folder.parents[1]
        if folder.parent.name != "rounds" or not (run_folder / "config.json").is_file():
            continue  # a mask file, not a find_ticket round
        run = load_config(run_folder)
        same = [f.name for f in dataclasses.fields(Experiment) if f.name not in ("seeds", *Experiment.PLACEMENT)]
        if (any(getattr(run, name) != getattr(config, name) for name in same) or seed not in run.seeds
                or run.rewind_at or not run.rewind_head or run.lr_decay != "finetuning"):
            continue
        path = (round_dir(run_folder, 0) if dense else folder) / "metrics.json"
        if path.is_file():
            return path, read_json(path, round_record(get_task(run.task).metrics))["metrics"][run.seeds.index(seed)]
    return None


def _sparsity_of(source: str | Path, sparsity) -> float | None:
    """Returns the sparsity whose round to take from a source folder: `sparsity` itself, or a RoundChoice's for the
    task of the run in that folder."""
    if sparsity is None or isinstance(sparsity, (int, float)):
        return sparsity
    source = Path(source)
    return sparsity.at(load_config(source).task) if (source / "config.json").is_file() else sparsity.at("*")


def _check_all_fit(masks: dict[str, Mask], tasks: list[Task], config: Experiment, seed: int) -> None:
    """Raises MaskError naming the source and target when a mask does not fit a target model."""
    checkpoint = resolve_checkpoint(config.model)
    for target in tasks:
        model = model_for_task(checkpoint, target, seed)
        for label, mask in masks.items():
            try:
                transfer_mask(mask, model)
            except MaskError as error:
                raise MaskError(f"{label} -> {target.name}: {error}") from None


def _key(source: str, target: str, seed: int) -> str:
    return f"{source}|{target}|{seed}"


def _open_record(output_dir: Path, config: Experiment, masks: dict, found, labels, task_settings: dict) -> dict:
    """Returns transfer.json's content, new or stored; a stored one must have the same settings and masks."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("task", "seeds", *Experiment.PLACEMENT)}
    if task_settings:  # absent from records written before targets had settings of their own
        settings["task_settings"] = task_settings
    sources = {label: {"path": str(path), "sparsity": mask.sparsity, "fingerprint": mask_digest(mask)}
               for label, (mask, path) in zip(labels, found)}
    path = output_dir / "transfer.json"
    fresh = {"settings": settings, "sources": sources, "runs": {}}
    if not path.exists():  # the folder is made by the first result written into it
        return fresh
    try:
        stored = read_record(path)
    except FileError as error:  # written by minilth: a damaged one is done again (a folder is refused)
        logger.warning(f"{error}: its fine-tunings are done again")
        return fresh
    if stored["settings"] != settings:
        changed = sorted(k for k in {**settings, **stored["settings"]} if stored["settings"].get(k) != settings.get(k))
        raise TransferError(f"{output_dir} holds a transfer run with other settings ({', '.join(changed)} differ); "
                            f"use another --output or the same settings to resume")
    for label, info in sources.items():
        old = stored["sources"].get(label)
        if old is not None and old["fingerprint"] != info["fingerprint"]:
            raise TransferError(f"{output_dir} has results for a different mask labelled '{label}'; "
                                f"use another --output or another --labels")
        stored["sources"][label] = info
    return stored


def read_record(path: str | Path) -> dict:
    """Returns transfer.json's content read through its schema, each run with its target task's metrics; FileError
    otherwise."""
    record = read_json(path, TRANSFER_RECORD)
    for key, run in record["runs"].items():
        check_run_metrics(run, path, f"runs.{key}.")
    return record


def load_matrix(path: str | Path) -> dict:
    """Returns a transfer.json as `transfer_matrix` returns it, with its targets, labels and seeds in the order they
    were run: a published matrix, read without its masks."""
    record = read_record(path)
    runs = record["runs"].values()
    record["tasks"] = list(dict.fromkeys(run["target"] for run in runs))
    record["labels"], record["seeds"] = list(record["sources"]), sorted({run["seed"] for run in runs})
    return record


def check_run_metrics(run: dict, source: str | Path, field: str = "") -> None:
    """Raises FileError unless a transfer run (a record's, at `field`; a sweep's cell) holds its target's metrics."""
    if run["target"] not in TASKS:
        raise FileError(f"{source}: {field}target is {run['target']!r}, expected one of {', '.join(TASKS)}")
    check_schema(metrics_schema(TASKS[run["target"]].metrics), run["metrics"], source, f"{field}metrics")


def summarize_matrix(record: dict) -> dict:
    """Returns the ticket-metric means (percent) per source and target, the dense baselines, and their differences."""
    tasks, rows = record["tasks"], record["labels"]
    means = {source: {} for source in [DENSE, *rows]}
    for source in means:
        for target in tasks:
            task = get_task(target)
            values = [run["metrics"][task.ticket_metric] * percent_scale(task)
                      for run in record["runs"].values() if run["source"] == source and run["target"] == target]
            means[source][target] = statistics.fmean(values) if values else math.nan
    baseline = [means[DENSE][t] for t in tasks]
    matrix = [[means[s][t] for t in tasks] for s in rows]
    return {"tasks": tasks, "sources": rows, "means": means, "baseline": baseline, "matrix": matrix,
            "difference": differences(matrix, baseline)}


def write_outputs(record: dict, output_dir: str | Path) -> str:
    """Writes transfer.csv and the heatmap (transfer_heatmap.png/.csv); returns the printable matrix."""
    output_dir = Path(output_dir)
    summary = summarize_matrix(record)
    rows = []
    for run in sorted(record["runs"].values(), key=lambda r: (r["target"], r["source"], r["seed"])):
        task = get_task(run["target"])
        base = summary["means"][DENSE][run["target"]]
        value = run["metrics"][task.ticket_metric] * percent_scale(task)
        rows.append({"source": run["source"], "target": run["target"], "seed": run["seed"],
                     "metric": task.ticket_metric, "value": value, "dense_mean": base, "minus_dense": value - base,
                     **{f"all_{k}": v for k, v in run["metrics"].items()}})
    if rows:
        write_csv(rows, output_dir / "transfer.csv")
    names = [f"{get_task(t).display_name} ({get_task(t).ticket_metric})" for t in summary["tasks"]]
    transfer_heatmap(summary["matrix"], summary["sources"], names, output_dir / "transfer_heatmap.png",
                     baseline=summary["baseline"], title="transfer: target metric minus its dense baseline",
                     unit="points (percent)")
    return format_matrix(summary)


def format_matrix(summary: dict) -> str:
    """Returns the matrix as text: each cell 'mean (difference to dense)', in percent."""
    header = ["source \\ target"] + [get_task(t).display_name for t in summary["tasks"]]
    lines = [[DENSE] + [f"{summary['means'][DENSE][t]:.2f}" for t in summary["tasks"]]]
    for source, row, diffs in zip(summary["sources"], summary["matrix"], summary["difference"]):
        lines.append([source] + ["-" if math.isnan(v) else f"{v:.2f} ({d:+.2f})" for v, d in zip(row, diffs)])
    return render_table([header] + lines)


# --- what the matrix supports -----------------------------------------------------------------------


def compare_cells(record: dict, control: str) -> list[dict]:
    """Returns, per (source, target) cell, what a claim about it rests on, in percent: the mean and std over seeds;
    the gap to the target's dense model and whether it is within one dense std (the winning-ticket rule,
    `is_ticket`); and, seed by seed, the gap to the `control` row (a random mask's) on the same seed."""
    cells = []
    for target in record["tasks"]:
        task = get_task(target)
        values = {source: {run["seed"]: percent_scale(task) * run["metrics"][task.ticket_metric]
                           for run in record["runs"].values() if run["source"] == source and run["target"] == target}
                  for source in [DENSE, *record["labels"]]}
        dense_values = list(values[DENSE].values())
        dense = describe(dense_values)
        for source in record["labels"]:
            seeds = sorted(values[source])
            if source == control or not seeds:
                continue
            cell_values = [values[source][seed] for seed in seeds]
            cell = describe(cell_values)
            cells.append({"source": source, "target": target, "metric": task.ticket_metric, "seeds": seeds,
                          "mean": cell["mean"], "std": cell["std"], "dense_mean": dense["mean"],
                          "dense_std": dense["std"], "minus_dense": cell["mean"] - dense["mean"],
                          "matches_dense": is_ticket(dense_values, cell_values)[0],
                          "minus_control": [values[source][seed] - values[control][seed] for seed in seeds
                                            if seed in values[control]]})
    return cells


def format_comparison(cells: list[dict], control: str) -> str:
    """Returns the cells as a table, then per target whether the sources are told apart: the best one's mean minus
    the worst one's, against the larger of their stds over seeds (`separation`)."""
    header = ["source", "target", "mean +- std", "minus dense (its std)", "matches dense", f"minus {control}, per seed"]
    table = [[c["source"], get_task(c["target"]).display_name, f"{c['mean']:.2f} +- {c['std']:.2f}",
              f"{c['minus_dense']:+.2f} ({c['dense_std']:.2f})", "yes" if c["matches_dense"] else "no",
              " ".join(f"{gap:+.2f}" for gap in c["minus_control"])] for c in cells]
    lines = [render_table([header] + table)]
    for target in dict.fromkeys(c["target"] for c in cells):
        row = sorted((c for c in cells if c["target"] == target), key=lambda c: c["mean"])
        worst, best = row[0], row[-1]
        lines.append(f"{get_task(target).display_name}: {best['source']} minus {worst['source']}: "
                     f"{separation(best['mean'] - worst['mean'], max(best['std'], worst['std']))}")
    return "\n".join(lines)
