"""The settings of an experiment, each declared once: what to fine-tune (Experiment) and how IMP prunes it
(TicketConfig), plus the named presets that the command line and the notebooks share.

    config = TicketConfig(task="rte")                                   # the paper's run
    config = TicketConfig.preset("classroom", target_sparsity=0.9)      # a preset, with changes

Every field is a setting with its default and its help; the command lines are derived from them
(settings.py), so `--learning-rate` is `learning_rate`. Fine-tuning settings left unset take the
task's values from the task table (data/tasks.py); the rest of a run's recipe (no warm-up, linear
decay, gradient clipping at 1.0) are FinetuneSettings' defaults (train.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .data.tasks import TASKS, get_task
from .prune import MAX_ROUNDS, MaskError, sparsity_schedule
from .schemas import MAX_SEED
from .settings import SettingsError, check, flag, from_dict, setting, to_dict
from .structured import StructuredSettings
from .train import FinetuneSettings


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
        check(len(self.seeds) > 0, f"give at least one seed ({flag('seeds')})")
        check(all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in self.seeds),
              f"{flag('seeds')} must be whole numbers from 0 to {MAX_SEED}, got {self.seeds}")
        check(len(set(self.seeds)) == len(self.seeds), f"{flag('seeds')} must differ, got {self.seeds}")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{flag(name)} must be at least 1, got {value}")
        check(self.max_eval_examples != 1 or get_task(self.task).kind != "regression",
              f"a correlation needs at least 2 examples: raise {flag('max_eval_examples')}")

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str):
        """Returns the settings a run's config.json holds; a bad value is a one-line error naming `source`."""
        return from_dict(cls, values, source)

    def differences(self, other: "Experiment") -> list[str]:
        """Returns the names of the settings that differ from `other`'s, where the run happens aside."""
        return [f.name for f in dataclasses.fields(self)
                if f.name not in self.PLACEMENT and getattr(self, f.name) != getattr(other, f.name)]


@dataclass(kw_only=True)
class TicketConfig(StructuredSettings, Experiment):
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
    lr_decay: str = setting("finetuning", "finetuning: the learning rate decays linearly to 0 within each "
                                          "fine-tuning (BERT's recipe, the reference's dense script); all_rounds: "
                                          "each round restarts a decay that would reach 0 only after every round's "
                                          "steps (the reference code's IMP rounds: 2e-5 falls to 1.8e-5 in a round "
                                          "of 10)", choices=("finetuning", "all_rounds"))

    def __post_init__(self):
        super().__post_init__()
        check(0.0 <= self.target_sparsity < 1.0,
              f"{flag('target_sparsity')} must be in [0, 1), got {self.target_sparsity}")
        check(0.0 < self.rate < 1.0, f"{flag('rate')} must be in (0, 1), got {self.rate}")
        try:
            self.sparsities()
        except MaskError:
            raise SettingsError(f"{flag('rate')} {self.rate:g} takes more than {MAX_ROUNDS} rounds to "
                                f"{flag('target_sparsity')} {self.target_sparsity:g}; raise {flag('rate')} (the "
                                f"paper's 0.1 takes 9 to 0.9)") from None
        check(0.0 <= self.rewind_at < 1.0, f"{flag('rewind_at')} must be a fraction of training in [0, 1), "
                                           f"got {self.rewind_at}")
        check(not (self.structured and self.include_embeddings),
              f"structured pruning removes heads and neurons, never embeddings: drop {flag('include_embeddings')}")

    def sparsities(self) -> list[float]:
        """Returns every round's sparsity, round 0's (dense) first: [0.0, 0.1, ..., target]."""
        return [0.0] + sparsity_schedule(self.target_sparsity, self.rate, self.schedule)

    @classmethod
    def preset(cls, name: str, **changes) -> "TicketConfig":
        """Returns a preset's config (see PRESETS), with `changes` replacing its values."""
        check(name in PRESETS, f"unknown preset '{name}'; use one of {', '.join(PRESETS)}")
        values = {**PRESETS[name].settings, **changes}
        check("task" in values, f"the {name} preset needs a task: TicketConfig.preset('{name}', task='rte')")
        return cls(**values)


@dataclass(frozen=True)
class Preset:
    """A named run: TicketConfig values (a flag or keyword given replaces its preset's value) and the controls
    to run at its last sparsity."""

    help: str
    settings: dict
    controls: tuple[str, ...] = ()


PRESETS = {
    "paper": Preset("the paper's run: bert-base-uncased, the task's hyper-parameters, 10% of the weights per round "
                    "up to 90%, rewinding to theta_0 (a GPU is advised)", {}),
    # Measured on a 2-core CPU (benchmarks/README.md, "The classroom run"): the levers that keep
    # STS-B's Pearson within seed noise and make 12 fine-tunings fit a lesson.
    "classroom": Preset(
        "STS-B on the real all-MiniLM-L6-v2 with 2 cores: the dense model, IMP to 50% and random pruning at 50%, "
        "3 seeds each, 1 epoch at lr 1e-4 (MiniLM learns STS-B in one; it stays near chance on RTE), the pooler "
        "kept dense (MiniLM never trained it), bf16 where the CPU computes it natively (else fp32), batches grouped "
        "by length",
        dict(task="stsb", model="all-MiniLM-L6-v2", target_sparsity=0.5, rate=0.25, keep_pooler=True, seeds=[0, 1, 2],
             epochs=1, learning_rate=1e-4, group_by_length=True, precision="auto"),
        controls=("random_pruning",)),
}
