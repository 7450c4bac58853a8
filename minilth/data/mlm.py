"""Masked-language modelling: a WikiText corpus cut into blocks, BERT's 80/10/10 masking, accuracy.

Blocks follow Hugging Face's `TextDataset` (run_language_modeling.py, the script the paper's
reference code builds on, without --line_by_line): the corpus is tokenized as one stream and cut
into blocks of max_length - 2 tokens, each wrapped as [CLS] block [SEP]; the tail shorter than a
block is dropped, as there. Unlike TextDataset, WikiText's heading lines (` = Title = `) and blank
lines are dropped first: they are markup, not prose.

Masking is done per batch (`mask_batch`), as Hugging Face's DataCollatorForLanguageModeling does,
so every epoch sees new masks; pass a seeded torch.Generator for reproducible evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch
from tqdm.auto import tqdm

from .batches import IGNORE_INDEX
from ..errors import DataError

DOWNLOAD_HINT = "python data_scripts/download_wikitext.py"


@dataclass
class MlmDataset:
    """Blocks of a corpus as features: input_ids ([CLS] ... [SEP]), token_type_ids 0, attention_mask 1."""

    features: list[dict] = field(default_factory=list)
    tokenizer: object = None  # masking needs its [MASK] id, special ids and vocabulary size

    def __len__(self) -> int:
        return len(self.features)


# ---------------------------------------------------------------------------------------------
# Corpus and blocks


def read_corpus(path: str | Path) -> list[str]:
    """Returns the prose lines of a WikiText raw file, stripped; blank and ` = Heading = ` lines dropped."""
    return list(_corpus_lines(path))


def _corpus_lines(path: str | Path) -> Iterator[str]:
    """Yields the prose lines of a WikiText raw file one at a time (the train split is 500 MB)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no corpus file at {path}: download WikiText-103 (raw) with `{DOWNLOAD_HINT}`")
    with open(path, encoding="utf-8") as f:
        try:
            for line in f:
                line = line.strip()
                if line and not _is_heading(line):
                    yield line
        except UnicodeDecodeError as error:  # a binary file, or text in another encoding
            raise DataError(f"{path} is not UTF-8 text ({error.reason}, byte {error.start} of a block read near "
                            f"byte {f.buffer.tell()}): is it WikiText's raw text? download it again with "
                            f"`{DOWNLOAD_HINT} --force`") from None


def _is_heading(line: str) -> bool:
    """Whether a stripped line is a WikiText heading: `= Title =`, `= = Section = =`, ..."""
    return len(line) >= 2 and line.startswith("=") and line.endswith("=")


def load_mlm(path: str | Path, tokenizer, max_length: int = 128, max_examples: int | None = None,
             lines_per_batch: int = 1000, progress: bool = True) -> MlmDataset:
    """Returns an MlmDataset of [CLS] block [SEP] features, max_length tokens each, from a corpus file.

    max_examples caps the number of blocks; the file is then read only as far as needed.
    """
    if max_length < 3:
        raise ValueError(f"max_length must leave room for [CLS], [SEP] and a token, got {max_length}")
    block_size = max_length - 2
    wanted_tokens = None if max_examples is None else max_examples * block_size
    stream = _token_stream(_corpus_lines(path), tokenizer, lines_per_batch, wanted_tokens, progress)
    blocks = cut_blocks(stream, block_size)
    if max_examples is not None:
        blocks = blocks[:max_examples]
    if not blocks:
        raise DataError(f"{path} holds fewer than {block_size} tokens of prose, not one block of "
                        f"max_length {max_length}: use a longer corpus or a smaller max_length")
    dataset = MlmDataset(tokenizer=tokenizer)
    for block in blocks:
        input_ids = [tokenizer.cls_id, *block, tokenizer.sep_id]
        dataset.features.append({"input_ids": input_ids, "token_type_ids": [0] * len(input_ids),
                                 "attention_mask": [1] * len(input_ids)})
    return dataset


def _token_stream(lines: Iterable[str], tokenizer, lines_per_batch: int,
                  wanted_tokens: int | None, progress: bool = True) -> list[int]:
    """Returns the token ids of all lines back to back (no special tokens), stopping once enough."""
    ids: list[int] = []
    chunk: list[str] = []
    bar = tqdm(desc="tokenizing corpus", unit=" lines", disable=None if progress else True)
    for line in _then_flush(lines):
        if line is not None:
            chunk.append(line)
        if chunk and (line is None or len(chunk) >= lines_per_batch):
            for encoding in tokenizer.backend.encode_batch(chunk, add_special_tokens=False):
                ids.extend(encoding.ids)
            bar.update(len(chunk))
            chunk = []
            if wanted_tokens is not None and len(ids) >= wanted_tokens:
                break
    bar.close()
    return ids


def _then_flush(lines: Iterable[str]) -> Iterator[str | None]:
    """Yields the lines, then None to say the last partial chunk must be encoded."""
    yield from lines
    yield None


def cut_blocks(ids: list[int], block_size: int) -> list[list[int]]:
    """Returns consecutive blocks of exactly block_size ids; the shorter tail is dropped (as TextDataset)."""
    return [ids[start:start + block_size] for start in range(0, len(ids) - block_size + 1, block_size)]


# ---------------------------------------------------------------------------------------------
# Masking


def special_tokens_mask(input_ids: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """Returns a BoolTensor shaped like input_ids, True where the id is special ([CLS], [SEP], [PAD], ...)."""
    special = torch.tensor(sorted(special_ids), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, special)


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, vocab_size: int,
                probability: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (masked_input_ids, labels), both (B, T), for BERT's masked-LM objective.

    Each token where special_mask is False (the mask must cover padding too) is chosen with
    `probability`; a chosen token becomes [MASK] 80% of the time, a uniformly random id 10%, and
    stays itself 10%. labels hold the original id at chosen positions and -100 elsewhere. The
    input is not modified; a seeded `generator` makes the result reproducible.
    """
    if special_mask.shape != input_ids.shape:
        raise ValueError(f"special_mask has shape {tuple(special_mask.shape)}, input_ids "
                         f"{tuple(input_ids.shape)}: they must match")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"the masking probability must be in [0, 1], got {probability}")
    device = generator.device if generator is not None else input_ids.device
    shape = input_ids.shape

    def coin(p: float) -> torch.Tensor:  # (B, T) booleans, True with probability p
        return (torch.rand(shape, generator=generator, device=device) < p).to(input_ids.device)

    chosen = coin(probability) & ~special_mask.bool()  # (B, T)
    to_mask = chosen & coin(0.8)  # (B, T)
    to_random = chosen & ~to_mask & coin(0.5)  # half of the remaining 20%: 10% of chosen
    random_ids = torch.randint(vocab_size, shape, generator=generator, device=device).to(input_ids.device)

    masked = input_ids.clone()
    masked[to_mask] = mask_id
    masked[to_random] = random_ids[to_random].to(masked.dtype)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))  # (B, T)
    return masked, labels


def mask_batch(batch: dict[str, torch.Tensor], tokenizer, probability: float = 0.15,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Returns a copy of a collated batch with masked input_ids and MLM labels (-100 = not scored).

    Padding is never masked: a position counts as special when its id is special or its
    attention_mask is 0.
    """
    input_ids = batch["input_ids"]
    special = special_tokens_mask(input_ids, tokenizer.special_ids)
    if "attention_mask" in batch:
        special |= batch["attention_mask"] == 0
    masked, labels = mask_tokens(input_ids, special, tokenizer.mask_id, tokenizer.vocab_size,
                                 probability, generator)
    return {**batch, "input_ids": masked, "labels": labels}


# ---------------------------------------------------------------------------------------------
# Metrics


def mlm_batch_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int, int]:
    """Returns (summed cross-entropy, number of masked tokens, number predicted right) for one batch.

    logits (B, T, V), labels (B, T) with -100 where nothing is scored. Summing over batches and
    calling `mlm_metrics` once gives per-token averages over the whole evaluation set.
    """
    scored = labels != IGNORE_INDEX  # (B, T)
    target = labels[scored]  # (N,)
    scored_logits = logits[scored].float()  # (N, V)
    loss_sum = torch.nn.functional.cross_entropy(scored_logits, target, reduction="sum")
    correct = (scored_logits.argmax(dim=-1) == target).sum()
    return float(loss_sum), int(scored.sum()), int(correct)


def mlm_metrics(total_loss_sum: float, num_masked: int, num_correct: int) -> dict[str, float]:
    """Returns {"accuracy", "loss", "perplexity"} over masked tokens: correct / masked, mean CE, exp(mean CE).

    Accuracy is a fraction in [0, 1] (the paper reports it in percent).
    """
    if num_masked <= 0:
        raise ValueError("no masked tokens were scored: the evaluation set is empty or the "
                         "masking probability is 0")
    mean_loss = total_loss_sum / num_masked
    perplexity = math.exp(mean_loss) if mean_loss < 700 else math.inf  # exp overflows past ~709
    return {"accuracy": num_correct / num_masked, "loss": mean_loss, "perplexity": perplexity}
