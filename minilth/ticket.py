"""Finding a lottery ticket: iterative magnitude pruning (IMP) with rewinding, the paper's algorithm.

Round k starts from a mask m_k (round 0's prunes nothing) and does three things:

    rewind   theta  <- m_k * theta_0        the pre-trained weights (or theta_i, after i steps of
                                            the dense fine-tuning); pruned weights are zero
    train    fine-tune the subnetwork on the task, once per seed; pruned weights stay zero
    prune    m_k+1  <- drop the smallest-magnitude weights the mask still keeps, globally over the
                       prunable matrices, until the next sparsity of the schedule (10% of the
                       original weights more per round, by default)

`imp_round` is exactly that, and `find_ticket` runs rounds until the target sparsity. Round 0's
fine-tuning is the dense baseline a ticket is judged against (same seeds, same data). The first
seed's trained model is the one pruned (a structured run may rank on every seed's: --rank-on).

What minilth rewinds: the whole model, encoder and task head, to its state before fine-tuning
(theta_0: the pre-trained encoder and the head as initialised by the seed). The reference code
keeps the head trained in the previous round instead; `rewind_head=False` does that.

Beside this file: the settings (config.py: TicketConfig), the run's folder, resuming and saving
(lottery/run_folder.py), the verdict (lottery/verdict.py) and, with `--structure`, pruning whole
heads and neurons instead of single weights (structured/).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import TicketConfig
from .lottery.plan import Clock, describe_plan
from .lottery.run_folder import Round, TicketRun, load_heads, save_round, start_run
from .prune import Mask, is_head, magnitude_prune, rewind, snapshot
from .scale import distributed
from .structured import prune_units
from .train import History, finetune, model_for_task, training_steps


def find_ticket(config: TicketConfig, output_dir: str | Path, progress: bool = True, echo=print) -> list[Round]:
    """Runs IMP to the target sparsity, resuming from `output_dir`'s finished rounds; returns every round.

    `echo` receives the plan before any training, and an estimate of the time left once the
    first fine-tuning has run a few steps (None: silent).
    """
    run = start_run(config, output_dir, progress)
    clock = Clock(run, echo)
    if echo and not run.finished:
        echo(describe_plan(run))
    while not run.finished:
        round_ = imp_round(run, progress, on_step=clock.tick)
        save_round(run, round_)  # written before the next round begins: a rerun resumes from here
        run.add(round_)  # the next round trains with the mask this one pruned
    return run.rounds


def imp_round(run: TicketRun, progress: bool = True, on_step=None) -> Round:
    """Returns the next round of IMP: rewind and train the subnetwork once per seed, then prune it further."""
    index, mask, started = len(run.rounds), run.mask, time.perf_counter()
    seeds = SeedResults()
    for seed in run.config.seeds:
        model = model_for_task(run.checkpoint, run.task, seed)  # the pre-trained encoder, a head drawn from the seed
        theta_0 = snapshot(model)  # theta_0, what every round rewinds to: {name: tensor}
        # 1. Rewind: the subnetwork m * theta_0 (m * theta_i after round 0, with --rewind-at); pruned weights zero.
        rewind(model, rewind_point(run, seed, theta_0), mask)
        # 2. Train: fine-tune the subnetwork; the mask keeps the pruned weights at zero.
        history = train_subnetwork(run, model, mask, seed, progress=progress, on_step=on_step)
        seeds.add(run, seed, model, history)
    # 3. Prune: drop the smallest weights the mask still keeps, of the first seed's trained model, globally.
    next_mask = None
    if index + 1 < len(run.sparsities):  # under torchrun: rank 0 prunes and sends the mask to every rank
        next_mask = distributed.on_rank_0(prune, run, seeds.ranked, mask, run.sparsities[index + 1])
    return Round(index, run.sparsities[index], mask, seeds.metrics, time.perf_counter() - started, seeds.heads,
                 next_mask, seeds.theta_i)


@dataclass
class SeedResults:
    """What a round keeps of each seed's fine-tuning: its metrics, its trained head, theta_i (round 0 of a run that
    rewinds to it) and the trained model(s) the next mask is ranked on."""

    metrics: list[dict] = field(default_factory=list)
    heads: dict = field(default_factory=dict)  # seed -> the trained head's tensors
    theta_i: dict = field(default_factory=dict)  # {"step": i, "weights": {seed: the weights after step i}}
    ranked: list = field(default_factory=list)  # the first seed's model; every seed's with --rank-on every_seed

    def add(self, run: TicketRun, seed: int, model, history: History) -> None:
        self.metrics.append(history.final)
        self.heads[seed] = head_of(model)
        if history.snapshot is not None:
            self.theta_i = {"step": history.snapshot_step, "weights": {**self.theta_i.get("weights", {}),
                                                                       seed: history.snapshot}}
        if not self.ranked or run.config.rank_on == "every_seed":
            self.ranked.append(model)


def prune(run: TicketRun, trained: list, mask: Mask, sparsity: float | dict[str, int]) -> Mask:
    """Returns the mask pruned further as the run prunes: the smallest weights of the first seed's trained model,
    globally (the paper), or with config.structure the least important heads and/or neurons (structured/).

    `sparsity` is the schedule's fraction, or exact counts to match another mask ({"weights": n},
    or {"heads": n, "neurons": m}).
    """
    if run.config.structured:
        return prune_units(run.config, run.task, run.data[0], trained, mask, sparsity)
    if isinstance(sparsity, dict):
        sparsity = sparsity["weights"] / mask.num_total  # rounds back to exactly that count
    return magnitude_prune(trained[0], mask, sparsity)


def rewind_point(run: TicketRun, seed: int, theta_0: dict) -> dict:
    """Returns the weights a round starts from: theta_0, or theta_i after round 0 of a run that rewinds to it, with
    the last trained head instead of the initial one when the head is not rewound."""
    weights = run.theta_i["weights"][seed] if run.theta_i else theta_0
    if not run.config.rewind_head and run.rounds:
        weights = {**weights, **load_heads(run, len(run.rounds) - 1)[seed]}
    return weights


def train_subnetwork(run: TicketRun, model, mask: Mask, seed: int, rewound: bool = True, progress: bool = True,
                     on_step=None) -> History:
    """Fine-tunes a masked model on the run's task as every IMP round does; returns its History."""
    train, dev = run.data
    return finetune(model, run.task, train, dev, run.config, seed=seed, mask=mask, progress=progress,
                    on_step=on_step, **schedule_in_round(run, rewound))


def schedule_in_round(run: TicketRun, rewound: bool = True) -> dict:
    """Returns where a round's fine-tuning starts and what it keeps, as finetune's keywords.

    Round 0, the dense fine-tuning, starts at step 0; a model rewound after it continues from the
    rewind step (theta_i's step i, or 0 for theta_0), and one that is not (standard pruning) starts
    again at 0. Round 0 of a run that rewinds to theta_i keeps its weights at that point
    (history.snapshot). With lr_decay="all_rounds", every fine-tuning restarts a linear decay
    spanning all the run's rounds (the reference code).
    """
    config = run.config
    steps = training_steps(config, run.task, len(run.data[0].features))
    return dict(start_step=run.theta_i.get("step", 0) if rewound and run.rounds else 0,
                lr_decay_steps=steps * len(run.sparsities) if config.lr_decay == "all_rounds" else None,
                snapshot_at=config.rewind_at if config.rewind_at and not run.rounds else None)


def head_of(model) -> dict:
    """Returns a CPU copy of the task head's tensors (the names outside `bert.`)."""
    return {name: tensor for name, tensor in snapshot(model).items() if is_head(name)}
