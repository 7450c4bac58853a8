"""Fine-tuning and evaluation: one plain loop for every task (classification, regression, SQuAD, MLM).

    model = model_for_task("bert-base-uncased", task, seed=0)
    history = finetune(model, task, train_data, eval_data, seed=0)                        # the paper's settings
    history = finetune(model, task, train_data, eval_data, epochs=1, learning_rate=1e-4)  # or others
    history.final  # the metrics after the last epoch, e.g. {'acc': 0.66, 'acc_se': 0.028, 'acc_chance': 0.53}

The settings are declared once, in FinetuneSettings (the command lines are derived from it);
epochs, learning rate, batch size and weight decay left as None take the paper's values for the
task from the task table (data/tasks.py). A mask, when given, holds through training: pruned
weights are zeroed after every optimiser step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import from_pretrained
from .data.batches import IGNORE_INDEX, batches, num_batches
from .data.mlm import mask_batch
from .data.scoring import batch_outputs, score
from .data.squad import EVALUATIONS
from .data.tasks import Task
from .errors import MinilthError
from .model import BertPreTrainedModel
from .prune import snapshot
from .scale import distributed
from .settings import SettingsError, check, check_choices, flag, setting

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
NO_DECAY = ("bias", "LayerNorm.weight")  # BERT never decays biases and LayerNorm gains
MAX_EPOCHS = 1000  # BERT fine-tunes for 2 to 4; more than this is a typing mistake


@dataclass(kw_only=True)
class FinetuneSettings:
    """fine-tuning (epochs, learning rate, batch size and weight decay left unset: the task's values, data/tasks.py)"""

    epochs: float | None = setting(None, "epochs per fine-tuning; may be fractional, e.g. 0.5")
    learning_rate: float | None = setting(None, "peak learning rate of AdamW")
    batch_size: int | None = setting(None, "examples per optimiser step")
    weight_decay: float | None = setting(None, "AdamW weight decay (biases and LayerNorm gains never decay)")
    warmup_ratio: float = setting(0.0, "fraction of the steps over which the learning rate rises from 0 "
                                       "(the paper: no warm-up)")
    max_grad_norm: float = setting(1.0, "clip the gradients' global norm to this; 0 turns clipping off")
    group_by_length: bool = setting(False, "batch examples of similar length: less padding, faster; "
                                           "the paper sampled batches at random")
    precision: str = setting("fp32", "bf16 autocast works on CPUs and GPUs, fp16 (with a loss scaler) on GPUs; auto: "
                                     "bf16 where the hardware computes it natively (a GPU with bf16, a CPU with "
                                     "AVX-512 BF16 or AMX), else fp32", choices=PRECISIONS)
    eval_batch_size: int = setting(128, "examples per evaluation batch (no gradients: larger is cheaper)")
    device: str = setting("auto", "auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    squad_evaluation: str = setting("official", "SQuAD answers and scores: official (evaluate-v1.1.py) or reference "
                                                "(the paper's code: the 20 best starts and ends over all max_length "
                                                "positions, padding included; 'empty' when no span is valid; "
                                                "transformers 2.x squad_evaluate)", choices=EVALUATIONS)

    def __post_init__(self):
        for name in ("epochs", "learning_rate", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            check(value is None or (value > 0 and math.isfinite(value)), f"{flag(name)} must be positive, got {value}")
        check(self.epochs is None or self.epochs <= MAX_EPOCHS, f"{flag('epochs')} must be at most {MAX_EPOCHS}, "
                                                               f"got {self.epochs}")
        for name in ("batch_size", "eval_batch_size"):
            check(getattr(self, name) is None or isinstance(getattr(self, name), int),
                  f"{flag(name)} must be a whole number, got {getattr(self, name)}")
        check(self.weight_decay is None or 0 <= self.weight_decay < math.inf,
              f"{flag('weight_decay')} must be 0 or more, got {self.weight_decay}")
        check(0 <= self.warmup_ratio < 1, f"{flag('warmup_ratio')} must be in [0, 1), got {self.warmup_ratio}")
        check(0 <= self.max_grad_norm < math.inf,
              f"{flag('max_grad_norm')} must be 0 (off) or more, got {self.max_grad_norm}")
        check_choices(self)  # precision, squad_evaluation, and the choices of the classes built on this one
        parse_device(self.device)

    def for_task(self, task: Task) -> "FinetuneSettings":
        """Returns a copy with every setting left as None filled in with the task's (the paper's) value."""
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return dataclasses.replace(self, epochs=pick(self.epochs, task.epochs),
                                   learning_rate=pick(self.learning_rate, task.learning_rate),
                                   batch_size=pick(self.batch_size, task.batch_size),
                                   weight_decay=pick(self.weight_decay, task.weight_decay))


@dataclass
class History:
    """What a fine-tuning run returns: enough to plot, compare and rewind."""

    losses: list[float] = field(default_factory=list)  # training loss at every step trained
    learning_rates: list[float] = field(default_factory=list)  # the learning rate each of those steps used
    epochs: list[dict] = field(default_factory=list)  # evaluation metrics after each epoch
    steps: int = 0  # the step training ended at (counted from 0, also when it started later)
    seconds: float = 0.0
    examples_per_second: float = 0.0
    snapshot: dict | None = None  # weights after `snapshot_at` of training (theta_i for rewinding)
    snapshot_step: int | None = None  # the step the snapshot was taken at

    @property
    def final(self) -> dict:
        """Metrics after the last epoch (empty when there was no evaluation data)."""
        return self.epochs[-1] if self.epochs else {}


def set_seed(seed: int) -> None:
    """Seeds every generator minilth draws from: dropout, head initialisation, masking."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parse_device(device: str | None) -> torch.device | None:
    """Returns the torch.device a device string names (None for 'auto'); a SettingsError for one minilth cannot use."""
    if device in (None, "auto"):
        return None
    try:
        named = torch.device(device)
    except (RuntimeError, TypeError):
        named = None
    if named is None or named.type not in ("cpu", "cuda") or (named.type == "cpu" and named.index is not None):
        raise SettingsError(f"unknown device '{device}' ({flag('device')}); use auto, cpu, cuda or cuda:N")
    return named


def choose_device(device: str | None = "auto") -> torch.device:
    """Returns the device to train on: CUDA when present for 'auto', else the CPU; or the one named.

    Under torchrun each process (rank) has its own, chosen when it joined (scale/distributed.start).
    """
    named = parse_device(device)
    if distributed.device() is not None:
        return distributed.device()
    if named is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if named.type == "cuda" and not torch.cuda.is_available():
        raise MinilthError(f"--device {device} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return named


def autocast(device: torch.device, precision: str):
    """Returns the autocast context for a precision: bf16 on CPU or CUDA, fp16 on CUDA only."""
    precision = native_precision(device) if precision == "auto" else precision
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise MinilthError("fp16 needs a CUDA GPU (it trains with a gradient scaler); use bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def native_precision(device: torch.device) -> str:
    """Returns "bf16" where the device computes bf16 natively, else "fp32": a CPU without AVX-512 BF16 or AMX
    emulates bf16 matrix products, many times slower than fp32 (measured on an AVX2 CPU: benchmarks/README.md)."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "fp32"


def model_for_task(checkpoint, task: Task, seed: int = 0) -> BertPreTrainedModel:
    """Returns the pre-trained model with a fresh head for the task, the head drawn from `seed`."""
    set_seed(seed)
    return from_pretrained(checkpoint, head=task.kind, num_labels=task.num_labels)


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over two groups: weights decay, biases and LayerNorm gains do not (BERT's recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith(NO_DECAY) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for all parameters; on a CPU about 10x faster than the per-tensor loop
    return torch.optim.AdamW(groups, lr=learning_rate, eps=1e-8, fused=True)


def linear_schedule(optimizer, decay_steps: int, warmup_steps: int = 0, start_step: int = 0):
    """Linear warm-up from 0 to the learning rate, then linear decay to 0 at `decay_steps`.

    `start_step` starts the schedule part-way, as a run rewound to step i continues from there.
    """
    def factor(step: int) -> float:
        step += start_step
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (decay_steps - step) / max(1, decay_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_steps(settings: FinetuneSettings, task: Task, num_features: int) -> int:
    """Returns the number of optimiser steps of one fine-tuning: epochs x batches per epoch, rounded up."""
    settings = settings.for_task(task)
    batches = num_batches(num_features, settings.batch_size)
    check(settings.epochs * batches >= 1 - 1e-9, f"{flag('epochs')} {settings.epochs:g} is less than one step: an "
                                                 f"epoch is {batches} batch{'es' * (batches != 1)}; give at least "
                                                 f"{1 / batches:.3g}")
    return max(1, math.ceil(settings.epochs * batches))


def finetune(model: BertPreTrainedModel, task: Task, train_data, eval_data=None,
             settings: FinetuneSettings | None = None, *, seed: int = 0, mask=None, start_step: int = 0,
             lr_decay_steps: int | None = None, snapshot_at: float | None = None, on_step=None,
             progress: bool = True, **overrides) -> History:
    """Fine-tunes the model in place on train_data; returns the History (losses, metrics per epoch).

    `settings` (or keyword overrides of its fields, e.g. `epochs=1`) left as None take the task's
    (the paper's) values. `mask` (a prune.Mask) is re-applied after every optimiser step, so
    pruned weights stay exactly zero. `start_step` continues a run rewound to that step: the
    learning-rate schedule and the order of the batches go on from there, as in open_lth and
    Frankle et al.; the optimiser starts afresh. `lr_decay_steps` makes the linear decay reach 0
    at that step instead of at the last one (the reference code's IMP rounds). `snapshot_at` (a
    fraction of the steps, e.g. 0.05) keeps a copy of the weights at that step in
    `history.snapshot`, the theta_i to rewind to. `on_step(step, model)` is called after every
    optimiser step (to watch or record anything).
    """
    settings = with_overrides(settings, overrides).for_task(task)
    device = choose_device(settings.device)
    autocast(device, settings.precision)  # an impossible precision fails here, before any work
    features = train_data.features
    if not features:
        raise MinilthError(f"no training examples for {task.name}")

    steps_per_epoch = num_batches(len(features), settings.batch_size)
    total_steps = training_steps(settings, task, len(features))
    if not 0 <= start_step < total_steps:
        raise MinilthError(f"start step {start_step} is outside this fine-tuning's {total_steps} steps")
    snapshot_step = None if snapshot_at is None else round(snapshot_at * total_steps)

    set_seed(seed)
    distributed.seed_dropout(seed)  # under torchrun each rank draws its own dropout masks
    model.to(device).train()
    trained = distributed.wrap(model, device, unused_parameters=bool(model.unused_tensors))  # DDP under torchrun
    optimizer = make_optimizer(model, settings.learning_rate, settings.weight_decay)
    scheduler = linear_schedule(optimizer, lr_decay_steps or total_steps, round(settings.warmup_ratio * total_steps),
                                start_step)
    scaler = torch.amp.GradScaler("cuda") if settings.precision == "fp16" else None
    keep_pruned_at_zero = mask.bind(model) if mask is not None else (lambda: None)
    keep_pruned_at_zero()
    history = History(steps=start_step)
    if snapshot_step == start_step:
        history.snapshot, history.snapshot_step = snapshot(model), start_step

    loss_terms, examples, started = [], 0, time.perf_counter()
    bar = tqdm(total=total_steps, initial=start_step, desc=f"fine-tune {task.name}",
               disable=not progress or not distributed.is_writer(), dynamic_ncols=True)
    epoch, skip = divmod(start_step, steps_per_epoch)
    while history.steps < total_steps:
        order = batches(features, settings.batch_size, shuffle=True, seed=seed + epoch,
                        group_by_length=settings.group_by_length, pad_id=_pad_id(train_data), start=skip)
        skip = 0
        for batch in order:
            batch = prepare_batch(batch, task, train_data, device, seed * 100_003 + history.steps)
            batch, weight = distributed.shard(batch, _loss_terms(batch, task))  # this rank's rows of the batch
            with autocast(device, settings.precision):
                loss = trained(**batch).loss * weight
            history.learning_rates.append(scheduler.get_last_lr()[0])
            _backward_and_step(loss, model, optimizer, scaler, settings.max_grad_norm)
            scheduler.step()
            keep_pruned_at_zero()
            history.steps += 1
            examples += batch["input_ids"].shape[0]
            loss_terms.append(loss.detach())
            if history.steps % 10 == 0 or history.steps == total_steps:  # reading the loss waits for the step
                _check_finite(loss_terms[-1].item(), history.steps, settings)
                bar.set_postfix(loss=f"{loss_terms[-1].item():.4f}")
            bar.update()
            if history.steps == snapshot_step:
                history.snapshot, history.snapshot_step = snapshot(model), snapshot_step
            if on_step is not None:
                on_step(history.steps, model)
            if history.steps == total_steps:
                break
        epoch += 1
        _check_finite(largest_weight(model), history.steps, settings, "the largest weight")
        if eval_data is not None:
            history.epochs.append(evaluate(model, task, eval_data, settings))
            bar.write(f"epoch {epoch}: " + ", ".join(f"{k} {history.epochs[-1][k]:.4f}" for k in task.metrics))
            model.train()
    bar.close()
    history.losses = distributed.average(torch.stack(loss_terms).float()).cpu().tolist()
    history.seconds = time.perf_counter() - started
    history.examples_per_second = examples / history.seconds
    return history


def with_overrides(settings: FinetuneSettings | None, overrides: dict) -> FinetuneSettings:
    """Returns the settings (default: FinetuneSettings()) with keyword overrides applied; an unknown keyword is a
    one-line error listing the known ones."""
    settings = settings or FinetuneSettings()
    known = {f.name for f in dataclasses.fields(settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SettingsError(f"unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(settings, **overrides) if overrides else settings


def _backward_and_step(loss, model, optimizer, scaler, max_grad_norm: float) -> None:
    """Backward pass, gradient-norm clipping and one optimiser step (through the fp16 scaler when there is one)."""
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _check_finite(value: float, step: int, settings: FinetuneSettings, what: str = "the training loss") -> None:
    """Raises MinilthError when training diverged: a loss or a weight of nan or inf makes every later number
    meaningless (and pruning by magnitude impossible)."""
    if not math.isfinite(value):
        raise MinilthError(f"{what} is {value} at step {step}: training diverged; lower --learning-rate "
                           f"(now {settings.learning_rate:g})")


def largest_weight(model: torch.nn.Module) -> float:
    """Returns the largest |weight| of the model (nan when one is nan), in one read from the device."""
    return torch.stack([p.detach().abs().max().float() for p in model.parameters()]).max().item()


def _loss_terms(batch: dict, task: Task) -> torch.Tensor:
    """Returns how many terms each row adds to the loss's mean: its masked tokens for MLM, else 1. (B,)"""
    if task.kind == "mlm":
        return (batch["labels"] != IGNORE_INDEX).sum(dim=1)
    return torch.ones(batch["input_ids"].shape[0])


def _pad_id(data) -> int:
    return getattr(data, "pad_id", 0)


def prepare_batch(batch: dict, task: Task, data, device: torch.device, masking_seed: int) -> dict:
    """Returns a collated batch on the device, with only what the model reads, and tokens masked for MLM.

    MLM masks (15%; 80/10/10) are drawn from a generator seeded by `masking_seed` (the step), so
    every epoch sees new masks and a run repeats exactly.
    """
    model_keys = ("input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions")
    batch = {k: v for k, v in batch.items() if k in model_keys}
    if task.kind == "mlm":
        batch = mask_batch(batch, data.tokenizer, task.mlm_probability, torch.Generator().manual_seed(masking_seed))
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}



@torch.no_grad()
def evaluate(model: BertPreTrainedModel, task: Task, data, settings: FinetuneSettings | None = None,
             **overrides) -> dict[str, float]:
    """Returns the task's metrics of the model on a dataset (e.g. {'acc': 0.66, ...} or {'f1': 88.1, ...}).

    The settings' device, precision, eval_batch_size and squad_evaluation apply ("reference":
    every SQuAD feature padded to the task's max_length, answers selected and scored as the
    paper's code does, data/squad.py).
    """
    settings = with_overrides(settings, overrides)
    device = choose_device(settings.device)
    model.to(device).eval()
    # the reference pads every SQuAD feature to max_length (processors/squad.py:139 of its transformers 2.x)
    pad_to = task.max_length if task.kind == "span" and settings.squad_evaluation == "reference" else None
    outputs = []
    order = batches(data.features, settings.eval_batch_size, pad_id=_pad_id(data), pad_to=pad_to)
    for step, batch in enumerate(order):
        batch = prepare_batch(batch, task, data, device, masking_seed=step)  # fixed masks: comparable runs
        with autocast(device, settings.precision):
            output = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        outputs.append(batch_outputs(task, output, batch))
    return score(task, data, outputs, settings.squad_evaluation)
