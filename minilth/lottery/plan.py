"""What an IMP run will do, and how long it will take, measured on its own first steps.

    print(describe_plan(run))        # the rounds, the fine-tunings, the output folder
    clock = Clock(run, print)        # pass clock.tick as finetune's on_step: after the first steps of
                                     # the first fine-tuning it prints the time left, once

The estimate costs nothing: it times the run's real training steps, never extra ones.
"""
from __future__ import annotations

import math
import time

from ..structured import STRUCTURES
from ..train import choose_device, training_steps

TIMED_STEPS = 10  # steps timed after the first one (which warms up) before the estimate is given


def describe_plan(run) -> str:
    """Returns a few lines saying what the run will do: rounds, fine-tunings, steps, where it writes."""
    config, task, (train, evaluation) = run.config, run.task, run.data
    settings = config.for_task(task)
    done = len(run.rounds)
    resumed = f" (resuming: {done} of {len(run.sparsities)} rounds done)" if done else ""
    rewinding = "theta_0" if not config.rewind_at else f"{100 * config.rewind_at:g}% of training"
    structure = ""
    if config.structured:
        structure = (f": of the {' and of the '.join(STRUCTURES[config.structure])}, ranked by {config.importance}"
                     + (" within each layer" if config.rank_within == "layer" else ""))
    return "\n".join([
        f"IMP on {task.display_name} from {config.model}: {len(train.features)} training / "
        f"{len(evaluation.features)} eval features, {task.ticket_metric} decides",
        f"rounds at sparsity {', '.join(f'{100 * s:.0f}%' for s in run.sparsities)}{resumed}{structure}",
        f"{fine_tunings_left(run)} fine-tunings x {training_steps(config, task, len(train.features))} steps "
        f"(batch {settings.batch_size}, {settings.epochs:g} epochs, seeds {config.seeds}), rewinding to {rewinding}",
        f"on {choose_device(config.device)}; output: {run.folder}"])


def fine_tunings_left(run) -> int:
    """Returns how many fine-tunings the run still has to do: one per seed in every unfinished round."""
    return (len(run.sparsities) - len(run.rounds)) * len(run.config.seeds)


class Clock:
    """Times the first fine-tuning's steps and says, once, about how long the run has left."""

    def __init__(self, run, echo):
        self.run, self.echo, self.times, self.last_step = run, echo, [], None

    def tick(self, step: int, model) -> None:
        """finetune's on_step: records the time; after TIMED_STEPS steps (the first not counted) of one fine-tuning,
        echoes the estimate. A fine-tuning too short to time gives none."""
        if self.echo is None or len(self.times) > TIMED_STEPS:
            return
        if self.last_step is not None and step != self.last_step + 1:  # another fine-tuning: only its own steps count
            self.times = []
        self.last_step = step
        self.times.append(time.perf_counter())
        if len(self.times) == TIMED_STEPS + 1:
            self.echo(f"estimated time left: {duration(self.seconds_left())} "
                      f"(from this run's first {TIMED_STEPS} steps)")

    def seconds_left(self) -> float:
        """Returns the estimated seconds of every fine-tuning left, training and evaluation, from the timed steps."""
        config, task, (train, evaluation) = self.run.config, self.run.task, self.run.data
        per_step = (self.times[-1] - self.times[0]) / TIMED_STEPS
        settings = config.for_task(task)
        steps = training_steps(config, task, len(train.features))
        # Each epoch ends with a pass over the eval set; a forward pass costs about a third of a training step.
        eval_steps = math.ceil(settings.epochs) * len(evaluation.features) / settings.batch_size / 3
        return (fine_tunings_left(self.run) * (steps + eval_steps) - len(self.times)) * per_step


def duration(seconds: float) -> str:
    """Returns a duration in words: 'about 40 s', 'about 7 min', 'about 2.5 h'."""
    if seconds < 120:
        return f"about {max(1, round(seconds))} s"
    if seconds < 7200:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
