"""Fine-tuning and evaluation: one plain loop for every task (classification, regression, SQuAD, MLM).

    model = model_for_task("bert-base-uncased", task, seed=0)
    history = finetune(model, task, train_data, eval_data, seed=0)
    history.final  # {'acc': 0.66}

Defaults are the paper's hyper-parameters from the task table; every one can be overridden.
A mask, when given, holds through training: pruned weights are zeroed after every optimiser step.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import batches, num_batches
from .errors import MinilthError
from .metrics import glue_metrics
from .mlm import mask_batch, mlm_batch_stats, mlm_metrics
from .model import BertPreTrainedModel
from .squad import postprocess, squad_metrics
from .tasks import Task
from .weights import from_pretrained

PRECISIONS = ("fp32", "bf16", "fp16")
NO_DECAY = ("bias", "LayerNorm.weight")  # BERT never decays biases and LayerNorm gains


@dataclass
class History:
    """What a fine-tuning run returns: enough to plot, compare and rewind."""

    losses: list[float] = field(default_factory=list)  # training loss at every step
    epochs: list[dict] = field(default_factory=list)  # evaluation metrics after each epoch
    steps: int = 0
    seconds: float = 0.0
    examples_per_second: float = 0.0
    snapshot: dict | None = None  # weights after `snapshot_at` of training (theta_i for rewinding)

    @property
    def final(self) -> dict:
        """Metrics after the last epoch (empty when there was no evaluation data)."""
        return self.epochs[-1] if self.epochs else {}


def set_seed(seed: int) -> None:
    """Seeds every generator minilth draws from: dropout, head initialisation, masking."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_device(device: str | None = "auto") -> torch.device:
    """Returns the device to train on: CUDA when present for 'auto', else the CPU; or the one named."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MinilthError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return device


def autocast(device: torch.device, precision: str):
    """Returns the autocast context for a precision: bf16 on CPU or CUDA, fp16 on CUDA only."""
    if precision not in PRECISIONS:
        raise MinilthError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise MinilthError("fp16 needs a CUDA GPU (it trains with a gradient scaler); use bf16 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_for_task(checkpoint, task: Task, seed: int = 0) -> BertPreTrainedModel:
    """Returns the pre-trained model with a fresh head for the task, the head drawn from `seed`."""
    head = {"classification": "classification", "regression": "regression", "span": "span", "mlm": "mlm"}[task.kind]
    set_seed(seed)
    return from_pretrained(checkpoint, head=head, num_labels=task.num_labels)


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over two groups: weights decay, biases and LayerNorm gains do not (BERT's recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith(NO_DECAY) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for all parameters; on a CPU about 10x faster than the per-tensor loop
    return torch.optim.AdamW(groups, lr=learning_rate, eps=1e-8, fused=True)


def linear_schedule(optimizer, total_steps: int, warmup_steps: int = 0):
    """Linear warm-up from 0 to the learning rate, then linear decay to 0 at the last step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def finetune(model: BertPreTrainedModel, task: Task, train_data, eval_data=None, *,
             learning_rate: float | None = None, batch_size: int | None = None, epochs: float | None = None,
             warmup_ratio: float = 0.0, weight_decay: float | None = None, max_grad_norm: float = 1.0,
             seed: int = 0, device: str | None = "auto", precision: str = "fp32", mask=None,
             group_by_length: bool = False, snapshot_at: float | None = None,
             on_step=None, progress: bool = True) -> History:
    """Fine-tunes the model in place on train_data; returns the History (losses, metrics per epoch).

    Hyper-parameters left as None come from the task table (the paper's). `epochs` may be
    fractional. `mask` (a prune.Mask) is re-applied after every optimiser step, so pruned
    weights stay exactly zero. `snapshot_at` (a fraction of the steps, e.g. 0.05) keeps a copy
    of the weights at that point in `history.snapshot`, the theta_i to rewind to. `on_step(step,
    model)` is called after every optimiser step (to watch or record anything).
    """
    learning_rate = learning_rate if learning_rate is not None else task.learning_rate
    batch_size = batch_size or task.batch_size
    epochs = epochs if epochs is not None else task.epochs
    weight_decay = weight_decay if weight_decay is not None else task.weight_decay
    device = choose_device(device)
    autocast(device, precision)  # an impossible precision fails here, before any work
    features = train_data.features
    if not features:
        raise MinilthError(f"no training examples for {task.name}")

    steps_per_epoch = num_batches(len(features), batch_size)
    total_steps = max(1, math.ceil(epochs * steps_per_epoch))
    snapshot_step = None if snapshot_at is None else round(snapshot_at * total_steps)

    set_seed(seed)
    model.to(device).train()
    optimizer = make_optimizer(model, learning_rate, weight_decay)
    scheduler = linear_schedule(optimizer, total_steps, round(warmup_ratio * total_steps))
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    keep_pruned_at_zero = mask.bind(model) if mask is not None else (lambda: None)
    keep_pruned_at_zero()
    history = History()
    if snapshot_step == 0:
        history.snapshot = _cpu_copy(model)

    loss_terms, examples, start = [], 0, time.perf_counter()
    bar = tqdm(total=total_steps, desc=f"fine-tune {task.name}", disable=not progress, dynamic_ncols=True)
    epoch = 0
    while history.steps < total_steps:
        order = batches(features, batch_size, shuffle=True, seed=seed + epoch,
                        group_by_length=group_by_length, pad_id=_pad_id(train_data))
        for batch in order:
            batch = _prepare(batch, task, train_data, device, seed * 100_003 + history.steps)
            with autocast(device, precision):
                loss = model(**batch).loss
            _backward_and_step(loss, model, optimizer, scaler, max_grad_norm)
            scheduler.step()
            keep_pruned_at_zero()
            history.steps += 1
            examples += batch["input_ids"].shape[0]
            loss_terms.append(loss.detach())
            if history.steps % 10 == 0 or history.steps == total_steps:
                bar.set_postfix(loss=f"{loss_terms[-1].item():.4f}")
            bar.update()
            if history.steps == snapshot_step:
                history.snapshot = _cpu_copy(model)
            if on_step is not None:
                on_step(history.steps, model)
            if history.steps == total_steps:
                break
        epoch += 1
        if eval_data is not None:
            history.epochs.append(evaluate(model, task, eval_data, device=device, precision=precision))
            bar.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in history.epochs[-1].items()))
            model.train()
    bar.close()
    history.losses = torch.stack(loss_terms).float().cpu().tolist()
    history.seconds = time.perf_counter() - start
    history.examples_per_second = examples / history.seconds
    return history


def _backward_and_step(loss, model, optimizer, scaler, max_grad_norm: float) -> None:
    """Backward pass, gradient-norm clipping and one optimiser step (through the fp16 scaler when there is one)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()


def _cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def _pad_id(data) -> int:
    return getattr(data, "pad_id", 0)


def _prepare(batch: dict, task: Task, data, device: torch.device, masking_seed: int) -> dict:
    """Moves a collated batch to the device, keeps only what the model reads, and masks tokens for MLM.

    MLM masks (15%; 80/10/10) are drawn fresh for every step from a generator seeded by the
    step, so every epoch sees new masks and a run repeats exactly.
    """
    model_keys = ("input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions")
    batch = {k: v for k, v in batch.items() if k in model_keys}
    if task.kind == "mlm":
        generator = torch.Generator().manual_seed(masking_seed)
        batch = mask_batch(batch, data.tokenizer, task.mlm_probability, generator)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: BertPreTrainedModel, task: Task, data, *, batch_size: int = 128,
             device: str | torch.device | None = "auto", precision: str = "fp32") -> dict[str, float]:
    """Returns the task's metrics of the model on a dataset (e.g. {'acc': 0.66} or {'f1': 88.1, ...})."""
    device = choose_device(device)
    model.to(device).eval()
    outputs, total_loss, masked, correct = [], 0.0, 0, 0
    for step, batch in enumerate(batches(data.features, batch_size, pad_id=_pad_id(data))):
        batch = _prepare(batch, task, data, device, masking_seed=step)  # fixed masks: comparable runs
        with autocast(device, precision):
            out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if task.kind == "mlm":
            loss_sum, num_masked, num_correct = mlm_batch_stats(out.logits, batch["labels"])
            total_loss, masked, correct = total_loss + loss_sum, masked + num_masked, correct + num_correct
        elif task.kind == "span":
            outputs.append((out.start_logits.float().cpu(), out.end_logits.float().cpu()))
        else:
            outputs.append(out.logits.float().cpu())
    if task.kind == "mlm":
        return mlm_metrics(total_loss, masked, correct)
    if task.kind == "span":
        return _squad_scores(data, outputs)
    logits = torch.cat(outputs)
    predictions = logits.squeeze(-1) if task.kind == "regression" else logits.argmax(-1)
    references = [f["labels"] for f in data.features]
    return glue_metrics(task, predictions.numpy(), np.asarray(references))


def _squad_scores(data, outputs) -> dict[str, float]:
    start = [row for s, _ in outputs for row in s]
    end = [row for _, e in outputs for row in e]
    return squad_metrics(postprocess(data, start, end), data.examples)
