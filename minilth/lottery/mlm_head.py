"""An MLM head for a checkpoint that never trained one: the head alone, on the frozen pre-trained encoder.

all-MiniLM-L6-v2 is a sentence-embedding model: its checkpoint holds the encoder and no
masked-language-modelling head, so a BertForMaskedLM built from it predicts tokens through a
random head (about 5% of masked tokens right, perplexity in the thousands). IMP on the MLM
objective would then prune an encoder to serve a head that knows nothing. This trains the head's
transform (dense, LayerNorm) and its output bias; the encoder and the word embeddings, which the
decoder shares, stay as they are. The model is saved as a checkpoint, so that an MLM run from it
starts from theta_0 = the pre-trained encoder with a head that predicts tokens:

    report = train_mlm_head(HeadSettings(model="all-MiniLM-L6-v2"), "runs/minilm-mlm-head")
    python -m minilth.find_ticket --task mlm_glue --model runs/minilm-mlm-head ...

Two passes. The frozen encoder reads each block of the corpus once, masked as MLM masks it
(15% of the tokens: 80% [MASK], 10% a random token, 10% unchanged), and keeps its hidden states at
the masked positions. The head then trains for a few epochs on those states alone, which costs a
fraction of a pass through the encoder. The paper's checkpoints (bert-base-uncased) carry their
pre-training head and need none of this.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import files
from ..checkpoints import from_pretrained, load_tokenizer, resolve_checkpoint, save_pretrained
from ..data import get_task, load_dataset
from ..data.batches import IGNORE_INDEX, batches
from ..settings import check, check_choices, flag, setting
from ..train import choose_device, evaluate, linear_schedule, parse_device, prepare_batch, set_seed

MLM_TASKS = ("mlm_glue", "mlm")
REPORT = "mlm_head.json"  # written beside the checkpoint: the head's training and its effect


@dataclass(kw_only=True)
class HeadSettings:
    """training the MLM head alone"""

    model: str = setting("all-MiniLM-L6-v2", "the checkpoint whose encoder stays frozen (a name or folder)")
    task: str = setting("mlm_glue", "the corpus: mlm_glue (the GLUE files' sentences) or mlm (WikiText-103)",
                        choices=MLM_TASKS)
    data_dir: str | None = setting(None, "the folder holding the corpus folder, or beside which it is made "
                                         "(default: $MINILTH_DATA_DIR, else data/glue)")
    max_train_examples: int | None = setting(4000, "blocks of 128 tokens the encoder reads, each masked once")
    max_eval_examples: int | None = setting(None, "held-out blocks to measure the head on")
    epochs: float = setting(3.0, "passes of the head over the masked positions")
    learning_rate: float = setting(1e-3, "peak learning rate of AdamW, decaying linearly to 0")
    batch_size: int = setting(1024, "masked positions per optimiser step")
    encoder_batch_size: int = setting(32, "blocks per pass of the encoder")
    seed: int = setting(0, "the head's initialisation, the masks and the order of the positions")
    device: str = setting("auto", "auto (a GPU when there is one), cpu, cuda, cuda:1, ...")

    def __post_init__(self):
        check_choices(self)
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{flag(name)} must be at least 1, got {value}")
        check(0 < self.epochs <= 100, f"{flag('epochs')} must be in (0, 100], got {self.epochs}")
        check(0 < self.learning_rate < 1, f"{flag('learning_rate')} must be in (0, 1), got {self.learning_rate}")
        for name in ("batch_size", "encoder_batch_size"):
            check(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                  f"{flag(name)} must be a whole number of at least 1, got {getattr(self, name)}")
        check(isinstance(self.seed, int) and self.seed >= 0, f"{flag('seed')} must be 0 or more, got {self.seed}")
        parse_device(self.device)


def train_mlm_head(settings: HeadSettings, output_dir: str | Path, progress: bool = True) -> dict:
    """Returns the report of training the MLM head of settings.model on its frozen encoder: the held-out masked-token
    accuracy, loss and perplexity before and after, and the training's losses. Writes the model with its trained
    head as a checkpoint into output_dir, the report beside it (mlm_head.json)."""
    started, task = time.perf_counter(), get_task(settings.task)
    checkpoint = resolve_checkpoint(settings.model)
    tokenizer = load_tokenizer(checkpoint)
    train = load_dataset(task, settings.data_dir, "train", tokenizer, settings.max_train_examples, progress)
    held_out = load_dataset(task, settings.data_dir, "dev", tokenizer, settings.max_eval_examples, progress)
    set_seed(settings.seed)
    model = from_pretrained(checkpoint, head="mlm").to(choose_device(settings.device))
    measure = lambda: evaluate(model, task, held_out, eval_batch_size=16, device=settings.device)  # noqa: E731
    before = measure()
    states, targets = masked_states(model, train, settings, progress)
    losses = fit_head(model.cls.predictions, states, targets, settings, progress)
    after = measure()
    save_pretrained(model.cpu(), output_dir, tokenizer_from=checkpoint)
    report = {"model": settings.model, "task": task.name, "settings": vars(settings), "blocks": len(train),
              "masked_positions": len(targets), "held_out_blocks": len(held_out), "before": before, "after": after,
              "losses": losses, "seconds": round(time.perf_counter() - started, 1)}
    files.write_text(Path(output_dir) / REPORT, json.dumps(report, indent=2) + "\n")
    return report


@torch.no_grad()
def masked_states(model, data, settings: HeadSettings, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the encoder's hidden states at every masked position of the corpus (M, H) and the tokens they hide
    (M,); each block is masked once, as MLM training masks it, from the settings' seed."""
    model.eval()  # no dropout: the head learns from the features the encoder gives
    device, task = next(model.parameters()).device, get_task(settings.task)
    states, targets = [], []
    order = batches(data.features, settings.encoder_batch_size, pad_id=getattr(data, "pad_id", 0))
    for step, batch in enumerate(tqdm(order, desc="encoder over the corpus", disable=not progress,
                                      total=math.ceil(len(data.features) / settings.encoder_batch_size))):
        batch = prepare_batch(batch, task, data, device, masking_seed=settings.seed * 100_003 + step)
        sequence, _ = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, T, H)
        masked = batch["labels"] != IGNORE_INDEX  # (B, T)
        states.append(sequence[masked].cpu())  # (m, H)
        targets.append(batch["labels"][masked].cpu())  # (m,)
    return torch.cat(states), torch.cat(targets)


def fit_head(head, states: torch.Tensor, targets: torch.Tensor, settings: HeadSettings,
             progress: bool = True) -> list[float]:
    """Trains the head's transform and bias to predict `targets` from `states`; returns the loss of every step.

    The decoder's weight is the word-embedding matrix, which belongs to the encoder: it is read, never changed.
    """
    own = list(head.parameters())  # transform (dense, LayerNorm) and bias: the decoder is not the head's parameter
    decoder = head.word_embeddings[0].weight
    decoder.requires_grad_(False)  # no gradient for the 30522 x H matrix: a third of each step saved
    optimizer = torch.optim.AdamW(own, lr=settings.learning_rate, weight_decay=0.0)
    steps = max(1, math.ceil(settings.epochs * len(targets) / settings.batch_size))
    scheduler = linear_schedule(optimizer, steps)
    generator = torch.Generator().manual_seed(settings.seed)
    device, losses, order = decoder.device, [], torch.empty(0, dtype=torch.long)
    head.train()
    for _ in tqdm(range(steps), desc="MLM head", disable=not progress):
        if len(order) < settings.batch_size:  # a new epoch: every position once more, in a new order
            order = torch.cat([order, torch.randperm(len(targets), generator=generator)])
        picked, order = order[:settings.batch_size], order[settings.batch_size:]
        loss = F.cross_entropy(head(states[picked].to(device)), targets[picked].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    decoder.requires_grad_(True)
    head.eval()
    return losses
