"""Is it a winning ticket? The verdict on an IMP run's rounds, under both of the paper's definitions.

    summary = summarize(rounds, task)        # the table of rounds and the sparsest winning ticket
    print(format_table(summary)); print("\n".join(verdict_lines(summary)))

A round is a winning ticket when its subnetwork, fine-tuned, matches the dense model of round 0
(same seeds, same data): within the dense model's noise (the paper's definition), or at least as
good as it. The noise is one standard deviation of the dense runs over seeds; with one seed, the
dev set's own sampling error. A dense model too close to chance may have learned nothing, and then
no round is called a ticket: within its noise, or within two of the dev set's sampling errors, of
what a model that learned nothing scores (on a dev set this size such a model lands that close by
luck).
"""
from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from .. import files
from ..data import Task
from ..schemas import SUMMARY, FileError, read_json
from .report import (SETTING_LABELS, csv_text, describe, is_whole_figure, new_figure, percent_scale, plot_sparsity_curve,
                     render_table, write_csv)

logger = logging.getLogger(__name__)


def summarize(rounds: list, task: Task, structure: str = "unstructured") -> dict:
    """Returns the table of rounds and the highest sparsity that is a winning ticket under both definitions.

    A round's `sparsity` is the schedule's: of the prunable weights, or in a structured run of the
    heads and of the neurons; `actual_sparsity` is always its mask's fraction of prunable weights.

    `within_noise` (the paper's definition): the mean metric is at least the dense mean minus the
    dense model's noise. `at_least_dense`: the mean metric is at least the dense mean. The noise is
    one standard deviation of the dense runs over seeds (the paper's rule); with one seed, which
    shows no spread, it is the dev set's own sampling error of the dense run. A dense model too close
    to chance (`dense_learned`) may have learned nothing, and then no sparsity is called a ticket:
    `verdict` says why.
    """
    metric = task.ticket_metric
    dense = describe([m[metric] for m in rounds[0].metrics])
    noise, rule = _noise(rounds[0].metrics, metric, dense)
    learned, chance, margin = dense_learned(rounds[0].metrics, metric, noise)
    table = []
    for r in rounds:
        values = [m[metric] for m in r.metrics]
        stats = describe(values)
        within_noise, at_least_dense = is_ticket([m[metric] for m in rounds[0].metrics], values, noise)
        table.append({"round": r.index, "sparsity": r.sparsity, "actual_sparsity": r.mask.sparsity,
                      "metric": metric, "mean": stats["mean"], "std": stats["std"], "min": stats["min"],
                      "max": stats["max"], "seeds": stats["n"], "within_noise": learned and within_noise,
                      "at_least_dense": learned and at_least_dense, "seconds": round(r.seconds, 1)})
    verdict = (f"the dense model learned: {dense['mean']:.4f} against {chance:.4f} for a model that learned nothing"
               if chance is not None else "no chance level is known for this task")
    if not learned:
        verdict = (f"undecided: the dense model's {dense['mean']:.4f} is within noise ({margin:.4f}) of the "
                   f"{chance:.4f} a model that learned nothing scores, so matching it says nothing")
    return {"task": task.name, "structure": structure, "metric": metric, "dense_mean": dense["mean"],
            "dense_std": dense["std"],
            "noise": noise, "noise_rule": rule, "chance": chance, "verdict": verdict,
            "ticket_within_noise": _highest(table, "within_noise"),
            "ticket_at_least_dense": _highest(table, "at_least_dense"), "rounds": table}


def is_ticket(dense: list[float], subnetwork: list[float], sampling_error: float = 0.0) -> tuple[bool, bool]:
    """Returns (within noise, at least dense): the paper's two definitions of a winning ticket, from the metric of
    each seed's dense model and subnetwork.

    Within noise: the subnetwork's mean is at least the dense mean minus one std of the dense runs
    over seeds; with one seed, which shows no spread, minus the dev set's `sampling_error` instead.
    At least dense: the subnetwork's mean is at least the dense mean.
    """
    noise = statistics.stdev(dense) if len(dense) > 1 else sampling_error
    mean = statistics.fmean(subnetwork)
    return mean >= statistics.fmean(dense) - noise, mean >= statistics.fmean(dense)


def dense_learned(dense_metrics: list[dict], metric: str, noise: float) -> tuple[bool, float | None, float]:
    """Returns (whether the dense model learned, the chance level, the margin it must clear): its mean must stand
    above chance by more than `noise` and than two of the dev set's sampling errors, since a model that learned
    nothing scores within about two of chance by luck (RTE's 277 pairs: 3 points each). True with no chance level."""
    chance = dense_metrics[0].get(f"{metric}_chance")
    luck = 2 * statistics.fmean(m.get(f"{metric}_se", 0.0) for m in dense_metrics)
    margin = max(noise, luck)
    return chance is None or statistics.fmean(m[metric] for m in dense_metrics) - chance > margin, chance, margin


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


def write_summary(output_dir: Path, rounds: list, task: Task, structure: str = "unstructured",
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


def table2_verdict(results: dict[str, list[dict]], task: Task, sparsity: float) -> list[str]:
    """Returns Table 2's verdict in words: is IMP's subnetwork at `sparsity` a winning ticket (both definitions), and
    how far it stands from each control, from {setting: [metrics per seed]} ("dense", "imp", then controls).

    The same rules as `summarize`: a dense model too close to chance makes the ticket "undecided".
    """
    metric, scale = task.ticket_metric, percent_scale(task)
    dense = [m[metric] for m in results["dense"]]
    noise, _ = _noise(results["dense"], metric, describe(dense))
    learned, chance, margin = dense_learned(results["dense"], metric, noise)
    at, imp = f"{100 * sparsity:.0f}%", [m[metric] for m in results["imp"]]
    within_noise, at_least_dense = is_ticket(dense, imp, noise)
    lines = [f"IMP at {at}: {'a winning ticket' if within_noise else 'no winning ticket'} within one dense std "
             f"({scale * noise:.2f}), {'at least' if at_least_dense else 'below'} the dense mean"]
    if not learned:
        lines = [f"undecided at {at}: the dense model's {metric} {scale * statistics.fmean(dense):.2f} is within noise "
                 f"({scale * margin:.2f}) of the {scale * chance:.2f} a model that learned nothing scores, so matching "
                 f"it says nothing"]
    for name, runs in results.items():
        if name in ("dense", "imp") or not runs:
            continue
        values = [m[metric] for m in runs]
        gap = scale * (statistics.fmean(imp) - statistics.fmean(values))
        spread = scale * max(_std(imp), _std(values))
        lines.append(f"IMP minus {SETTING_LABELS.get(name, name).lower()} at {at}: {separation(gap, spread)}")
    return lines


def separation(gap: float, spread: float) -> str:
    """Returns a gap between two settings in points and in stds over seeds; under one std they are not told apart."""
    if spread <= 0:
        return f"{gap:+.2f} points"
    if abs(gap) < spread:
        return f"{gap:+.2f} points, within the larger std over seeds ({spread:.2f}): not told apart"
    return f"{gap:+.2f} points, {abs(gap) / spread:.0f} times the larger std over seeds"


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summary_problem(output_dir: Path, rounds: list, task: Task, structure: str = "unstructured") -> str | None:
    """Returns what is wrong with the summary files write_summary wrote for these rounds (one missing, damaged, or
    out of date), or None when they are whole and current."""
    summary = summarize(rounds, task, structure)
    path = Path(output_dir) / "summary.json"
    try:
        if read_json(path, SUMMARY) != json.loads(json.dumps(summary)):  # as the file holds it
            return f"{path} does not hold these rounds"
    except FileError as error:  # a folder in its place is refused instead
        return str(error)
    csv_path = path.with_suffix(".csv")
    if not csv_path.is_file() or csv_path.read_bytes() != csv_text(summary["rounds"]).encode("utf-8"):
        return f"{csv_path} is missing, or does not hold these rounds"
    figures = [path.with_suffix(".png"), path.with_suffix(".svg")] if new_figure((1, 1)) is not None else []
    damaged = [figure for figure in figures if not is_whole_figure(figure)]
    return f"{damaged[0]} is missing or damaged" if damaged else None


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
