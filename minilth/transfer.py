"""Transfer: the mask found on task A, applied to theta_0, fine-tuned on task B with a fresh head.

Only the mask moves. The target model is the pre-trained checkpoint with a head for the target
task; no weight of the source run is ever read (from a find_ticket folder, only a round's mask.pt).

    mask = Mask.load("runs/mlm/rounds/round_07/mask.pt")
    transfer(mask, "rte", Experiment(task="rte", model="bert-base-uncased"))  # {'acc': ...}

    python -m minilth.transfer --mask runs/rte runs/mrpc --sparsity 0.5 --tasks rte mrpc stsb cola \\
        --model path/to/bert --output runs/transfer

fills a source x target matrix (plus each target's dense baseline) in transfer.json, one cell
at a time (rerun to resume), then writes transfer.csv, the heatmap transfer_heatmap.png (with
its CSV) and prints the matrix.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from . import distributed, files
from .errors import MinilthError, run_cli
from .prune import Mask, MaskError, is_pooler, named_tensors, prunable_names
from .report import differences, percent_scale, render_table, to_json, transfer_heatmap, write_csv
from .settings import add_arguments, add_command_options, from_arguments
from .tasks import TASKS, get_task
from .ticket import Experiment, fresh_model, load_task_data
from .train import FinetuneSettings, finetune

DENSE = "dense"  # the row of dense baselines: the full pre-trained model fine-tuned on each target


class TransferError(MinilthError, ValueError):
    """A mask source that cannot be read or chosen, or a transfer output folder with other settings."""


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


def transfer(mask: Mask | None, target_task: str, config: Experiment, seed: int = 0, data=None,
             progress: bool = True) -> dict:
    """Returns the target task's metrics of theta_0 (fresh head from `seed`) under the mask, fine-tuned.

    `config` gives the checkpoint, data folder and fine-tuning settings; its task is replaced by
    the target. `data` (train, eval) may be passed to avoid reading the target's files again.
    No mask (None) fine-tunes the dense model: the target's baseline.
    """
    task = get_task(target_task)
    config = dataclasses.replace(config, task=task.name)
    data = data or load_task_data(config, task, progress)
    model = fresh_model(config, task, seed)
    moved = None if mask is None else transfer_mask(mask, model)
    if moved is not None:
        moved.apply_to(model)
    return finetune(model, task, *data, config, seed=seed, mask=moved, progress=progress).final


# --- reading masks from files or find_ticket folders -----------------------------------------------


def find_mask(source: str | Path, sparsity: float | None = None) -> tuple[Mask, Path]:
    """Returns (mask, its file): a mask file, or a find_ticket folder's round at `sparsity` (default: the sparsest).

    In a folder only the rounds' mask.pt files are read, nothing else of the run.
    """
    source = Path(source)
    if source.is_file():
        return Mask.load(source), source
    if not source.is_dir():
        raise TransferError(f"mask source {source} does not exist; give a mask.pt file or a find_ticket output folder")
    files = sorted(source.glob("rounds/round_*/mask.pt"))
    if not files:
        raise TransferError(f"{source} holds no rounds/round_*/mask.pt; give a mask file or a find_ticket folder")
    masks = [(mask, path) for mask, path in ((Mask.load(path), path) for path in files)
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


def fingerprint(mask: Mask) -> str:
    """Returns a short sha256 of the mask's names and bits: the same mask gives the same fingerprint."""
    digest = hashlib.sha256()
    for name, flag in mask.items():
        digest.update(name.encode())
        digest.update(np.packbits(flag.numpy().reshape(-1)).tobytes())
    return digest.hexdigest()[:16]


# --- the matrix ------------------------------------------------------------------------------------


def transfer_matrix(sources: list[str | Path], tasks: list[str], config: Experiment, output_dir: str | Path,
                    sparsity: float | None = None, seeds: list[int] | None = None, labels: list[str] | None = None,
                    progress: bool = True, echo=print) -> dict:
    """Fills transfer.json in output_dir with every (source, target, seed) and each target's dense baseline; returns it.

    Every run is written as soon as it is done and skipped when found, so a rerun resumes. Masks
    and targets are all checked (names, shapes) before any training.
    """
    output_dir = Path(output_dir)
    tasks = [get_task(t).name for t in tasks]
    seeds = list(seeds or config.seeds)
    found = [find_mask(source, sparsity) for source in sources]
    labels = labels or [source_label(path, mask) for mask, path in found]
    if len(labels) != len(found) or len(set(labels)) != len(labels) or DENSE in labels:
        raise TransferError(f"give one distinct label per source (and none called '{DENSE}'), got {labels}; "
                            f"pass --labels")
    masks = dict(zip(labels, (mask for mask, _ in found)))
    _check_all_fit(masks, tasks, config, seeds[0])
    record = _open_record(output_dir, config, masks, found, labels)
    todo = [(s, t, seed) for t in tasks for s in [DENSE, *labels] for seed in seeds
            if _key(s, t, seed) not in record["runs"]]
    if echo:
        echo(f"transfer {len(labels)} mask(s) to {', '.join(tasks)} with seeds {seeds} (+ dense baselines): "
             f"{len(todo)} fine-tunings to do; results in {output_dir}")
    for target in tasks:
        task_config = dataclasses.replace(config, task=target)
        pending = [(s, seed) for s, t, seed in todo if t == target]
        with distributed.rank_0_first():
            data = load_task_data(task_config, get_task(target), progress) if pending else None
        for source, seed in pending:
            started = time.perf_counter()
            metrics = transfer(None if source == DENSE else masks[source], target, task_config, seed, data, progress)
            record["runs"][_key(source, target, seed)] = {"source": source, "target": target, "seed": seed,
                                                          "metrics": metrics,
                                                          "seconds": round(time.perf_counter() - started, 1)}
            files.write_text(output_dir / "transfer.json", to_json(record))
    record["tasks"], record["labels"], record["seeds"] = tasks, labels, seeds
    return record


def _check_all_fit(masks: dict[str, Mask], tasks: list[str], config: Experiment, seed: int) -> None:
    """Raises MaskError naming the source and target when a mask does not fit a target model."""
    for target in tasks:
        model = fresh_model(dataclasses.replace(config, task=target), get_task(target), seed)
        for label, mask in masks.items():
            try:
                transfer_mask(mask, model)
            except MaskError as error:
                raise MaskError(f"{label} -> {target}: {error}") from None


def _key(source: str, target: str, seed: int) -> str:
    return f"{source}|{target}|{seed}"


def _open_record(output_dir: Path, config: Experiment, masks: dict, found, labels) -> dict:
    """Returns transfer.json's content, new or stored; a stored one must have the same settings and masks."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("task", "seeds", *Experiment.PLACEMENT)}
    sources = {label: {"path": str(path), "sparsity": mask.sparsity, "fingerprint": fingerprint(mask)}
               for label, (mask, path) in zip(labels, found)}
    path = output_dir / "transfer.json"
    if not path.exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        return {"settings": settings, "sources": sources, "runs": {}}
    stored = json.loads(path.read_text())
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


# --- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minilth.transfer",
        description="Transfer lottery-ticket masks to other tasks: each mask is applied to the pre-trained "
                    "weights theta_0 with a fresh head for the target task and fine-tuned (no weight of the "
                    "source run is used). Each target's dense model is fine-tuned too, as the baseline. "
                    "Writes transfer.json (one entry per run, written as it finishes: rerun to resume), "
                    "transfer.csv, transfer_heatmap.png/.csv, and prints the matrix.",
        epilog="example: python -m minilth.transfer --mask runs/rte runs/mrpc --sparsity 0.5 "
               "--tasks rte mrpc stsb cola --model all-MiniLM-L6-v2 --seeds 0 1 2")
    what = parser.add_argument_group("masks and targets")
    what.add_argument("--mask", "--sources", dest="sources", nargs="+", required=True, metavar="PATH",
                      help="mask.pt files or find_ticket output folders (several fill a source x target matrix)")
    what.add_argument("--sparsity", type=float, default=None,
                      help="for folders: the round at this sparsity (default: each folder's sparsest mask)")
    what.add_argument("--tasks", nargs="+", required=True, help=f"target tasks, any of: {', '.join(TASKS)}")
    what.add_argument("--labels", nargs="+", default=None, help="a name per source (default: folder@sparsity)")
    add_arguments(parser, Experiment, order=(Experiment, FinetuneSettings), exclude=("task",))
    add_command_options(parser, output="runs/transfer")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args) -> int:
    """Fills the transfer matrix the arguments describe, writes and prints it; returns 0."""
    tasks = [get_task(t).name for t in args.tasks]
    config = from_arguments(Experiment, args, task=tasks[0])
    output = args.output or "runs/transfer"
    started = time.perf_counter()
    distributed.start(config.device)  # under torchrun: join the other ranks
    record = transfer_matrix(args.sources, tasks, config, output, args.sparsity, labels=args.labels,
                             progress=not args.quiet)
    print(write_outputs(record, output))
    print(f"{time.perf_counter() - started:.0f} s; results in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
