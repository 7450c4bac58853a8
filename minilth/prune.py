"""Pruning: which weights may be pruned, the Mask, global magnitude pruning, the schedule and rewinding.

A mask is a dict keyed by state-dict name, True = kept:
`mask["bert.encoder.layer.3.attention.self.query.weight"]  # (768, 768) bool`.
Iterative magnitude pruning (IMP), as in the paper, is these functions called in a loop
(ticket.py runs this loop, with seeds, files and resuming):

    theta_0 = snapshot(model)
    mask = Mask.dense(model)
    for sparsity in sparsity_schedule(0.9):          # 0.1, 0.2, ..., 0.9 of the ORIGINAL weights
        finetune(model, task, train, dev, mask=mask)  # pruned weights stay zero
        mask = magnitude_prune(model, mask, sparsity)
        rewind(model, theta_0, mask)

Everything works on any nn.Module or state dict with Hugging Face BERT parameter names, with or
without the `bert.` prefix of the headed models. Masks are saved by checkpoints/masks.py.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .errors import MinilthError


class MaskError(MinilthError, ValueError):
    """A mask does not fit a model, a mask file is unreadable, or a pruning request is impossible."""


# The prunable set, declared once. The paper prunes the 6 matrices of every encoder layer
# (72 in BERT-base) plus the pooler: 73 matrices, about 85M weights. Never pruned: biases,
# LayerNorms, task heads; embeddings only on request.
ENCODER_PATTERN = (r"encoder\.layer\.\d+\."
                   r"(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"
                   r"\.weight")
POOLER_PATTERN = r"pooler\.dense\.weight"
EMBEDDINGS_PATTERN = r"embeddings\.(word|position|token_type)_embeddings\.weight"

TensorsLike = nn.Module | Mapping[str, torch.Tensor]
MAX_ROUNDS = 100  # of a schedule: the paper's has 9 pruned rounds


# --- names and tensors -----------------------------------------------------------------------------


def named_tensors(model_or_sd: TensorsLike) -> dict[str, torch.Tensor]:
    """Returns name -> tensor; for a module the live parameters and buffers (writing them changes the model)."""
    if isinstance(model_or_sd, nn.Module):
        tensors = dict(model_or_sd.named_buffers())
        tensors.update(model_or_sd.named_parameters(remove_duplicate=False))  # tied weights under every name
        return tensors
    if isinstance(model_or_sd, Mapping):
        return dict(model_or_sd)
    raise MaskError(f"expected an nn.Module or a state dict, got {type(model_or_sd).__name__}")


def prunable_names(model_or_sd: TensorsLike, include_embeddings: bool = False,
                   include_pooler: bool = True) -> list[str]:
    """Returns the names of the prunable weight matrices, in the model's order (73 for BERT-base by default)."""
    parts = [ENCODER_PATTERN] + [POOLER_PATTERN] * include_pooler + [EMBEDDINGS_PATTERN] * include_embeddings
    pattern = re.compile(r"^(bert\.)?(" + "|".join(parts) + r")$")
    all_names = list(named_tensors(model_or_sd))
    names = [name for name in all_names if pattern.match(name)]
    if not names:
        seen = ", ".join(all_names[:3]) or "nothing"
        raise MaskError(f"no prunable weights found (names like 'bert.encoder.layer.0.attention.self.query.weight' "
                        f"expected, got {seen}); pass a BERT model or its state dict")
    return names


def is_pooler(name: str) -> bool:
    """Returns True for the pooler's weight matrix, with or without the `bert.` prefix."""
    return re.search(POOLER_PATTERN + "$", name) is not None


def is_head(name: str) -> bool:
    """Returns True for a task-head parameter of a headed model: a name outside `bert.` (classifier, cls, ...)."""
    return not name.startswith("bert.")


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Returns a detached CPU copy of the model's state dict (theta_0 or theta_i for rewinding)."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


# --- the mask --------------------------------------------------------------------------------------


class Mask:
    """A pruning mask: name -> bool tensor of the weight's shape, True = kept, False = pruned (stored on CPU)."""

    def __init__(self, flags: Mapping[str, torch.Tensor]):
        if not flags:
            raise MaskError("a mask needs at least one tensor")
        self.flags: dict[str, torch.Tensor] = {}
        for name, flag in flags.items():
            if not isinstance(flag, torch.Tensor) or flag.dtype != torch.bool:
                raise MaskError(f"mask entry '{name}' must be a bool tensor, got "
                                f"{getattr(flag, 'dtype', type(flag).__name__)}")
            self.flags[name] = flag.detach().to("cpu")

    @classmethod
    def dense(cls, model_or_sd: TensorsLike, names: list[str] | None = None) -> "Mask":
        """Returns an all-ones mask (sparsity 0) over `names`, by default the prunable set."""
        tensors = named_tensors(model_or_sd)
        names = prunable_names(model_or_sd) if names is None else names
        missing = [name for name in names if name not in tensors]
        if missing:
            raise MaskError(f"the model has no tensor named {', '.join(missing[:3])}; check the names")
        return cls({name: torch.ones(tensors[name].shape, dtype=torch.bool) for name in names})

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.flags[name]

    def __contains__(self, name: str) -> bool:
        return name in self.flags

    def __iter__(self):
        return iter(self.flags)

    def __len__(self) -> int:
        return len(self.flags)

    def names(self) -> list[str]:
        """Returns the masked tensor names, in order."""
        return list(self.flags)

    def items(self):
        return self.flags.items()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        return self.names() == other.names() and all(torch.equal(self[name], other[name]) for name in self.flags)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {self.num_total:,} weights, sparsity {self.sparsity:.4f})"

    @property
    def num_total(self) -> int:
        """Number of weights under the mask."""
        return sum(flag.numel() for flag in self.flags.values())

    @property
    def num_kept(self) -> int:
        """Number of weights kept (True)."""
        return sum(int(torch.count_nonzero(flag)) for flag in self.flags.values())

    @property
    def num_pruned(self) -> int:
        """Number of weights pruned (False)."""
        return self.num_total - self.num_kept

    @property
    def sparsity(self) -> float:
        """Fraction of pruned weights over the masked set, the number the paper reports."""
        return self.num_pruned / self.num_total

    def pruned_count(self, name: str) -> int:
        """Returns the number of pruned weights in one tensor."""
        return self.flags[name].numel() - int(torch.count_nonzero(self.flags[name]))

    def per_tensor_sparsity(self) -> dict[str, float]:
        """Returns name -> fraction of that tensor's weights that are pruned."""
        return {name: self.pruned_count(name) / flag.numel() for name, flag in self.flags.items()}

    def check_fits(self, model_or_sd: TensorsLike) -> None:
        """Returns None when every masked name exists in the model with the same shape; raises MaskError otherwise."""
        tensors = named_tensors(model_or_sd)
        missing = [name for name in self.flags if name not in tensors]
        wrong = [f"{name} mask {tuple(flag.shape)} vs model {tuple(tensors[name].shape)}"
                 for name, flag in self.flags.items() if name in tensors and flag.shape != tensors[name].shape]
        problems = [f"{len(found)} {what} ({'; '.join(found[:3])}{'; ...' if len(found) > 3 else ''})"
                    for found, what in ((missing, "names missing"), (wrong, "shape mismatches")) if found]
        if problems:
            raise MaskError(f"mask was made for another model: {'; '.join(problems)}")

    def apply_to(self, model_or_sd: TensorsLike) -> None:
        """Returns None; zeroes the pruned weights of the model (or state dict tensors) in place."""
        self.bind(model_or_sd)()

    def bind(self, model_or_sd: TensorsLike) -> Callable[[], None]:
        """Returns a function zeroing the pruned weights in one `_foreach_mul_`; call it after each optimizer step."""
        self.check_fits(model_or_sd)
        tensors = named_tensors(model_or_sd)
        weights = [tensors[name] for name in self.flags]
        # The float masks are built once, on the weights' device and dtype, so each call is one fused multiply.
        factors = [flag.to(device=w.device, dtype=w.dtype) for flag, w in zip(self.flags.values(), weights)]

        def zero_pruned_weights() -> None:
            with torch.no_grad():
                torch._foreach_mul_(weights, factors)

        return zero_pruned_weights


# --- global magnitude pruning ----------------------------------------------------------------------


def count_to_prune(target_sparsity: float, total: int) -> int:
    """Returns the exact number of weights (or units) a sparsity prunes out of `total`: round(target x total)."""
    if not isinstance(target_sparsity, (int, float)) or not 0.0 <= target_sparsity < 1.0:
        raise MaskError(f"target sparsity must be in [0, 1), got {target_sparsity!r}")
    return int(round(target_sparsity * total))


def keep_largest(scores: torch.Tensor, num_pruned: int) -> torch.Tensor:
    """Returns a bool vector keeping all but the `num_pruned` smallest scores; ties go by index (lower pruned first)."""
    if num_pruned == 0:
        return torch.ones_like(scores, dtype=torch.bool)  # (N,)
    # numpy's introselect is ~3x faster than torch.kthvalue on CPU and needs no index tensor.
    values = scores.cpu().numpy().copy()
    values.partition(num_pruned - 1)
    threshold = float(values[num_pruned - 1])  # the num_pruned-th smallest score
    keep = scores > threshold  # (N,)
    ties = torch.nonzero(scores == threshold).flatten()  # (n_ties,)
    still_to_prune = num_pruned - int(torch.count_nonzero(scores < threshold))
    keep[ties[still_to_prune:]] = True  # of the ties, the first `still_to_prune` in index order are pruned
    return keep


def prune_by_scores(scores: list[torch.Tensor], mask: Mask, num_pruned: int) -> Mask:
    """Returns a new mask pruning the `num_pruned` smallest scores over all tensors together.

    `scores` holds one flat tensor per masked tensor, in the mask's order; already-pruned weights
    must score below every kept one (magnitude_prune gives them -1) so that they stay pruned.
    """
    if num_pruned < mask.num_pruned:
        raise MaskError(f"target sparsity {num_pruned / mask.num_total:.4f} is below the mask's current sparsity "
                        f"{mask.sparsity:.4f}; pruned weights cannot come back, ask for a higher target")
    keep = keep_largest(torch.cat(scores), num_pruned).cpu()  # (N,)
    pieces = torch.split(keep, [flag.numel() for flag in mask.flags.values()])
    return Mask({name: piece.reshape(flag.shape) for (name, flag), piece in zip(mask.items(), pieces)})


def magnitude_prune(model_or_sd: TensorsLike, mask: Mask, target_sparsity: float) -> Mask:
    """Returns a new mask with global magnitude pruning to exactly round(target * total) zeros over the masked set.

    Among the weights `mask` still keeps, the smallest |w| across all masked tensors together are
    dropped; already-pruned weights stay pruned. Ties at the threshold are broken by position: the
    tensors in the mask's order, each flattened row-major, lower positions pruned first.
    """
    mask.check_fits(model_or_sd)
    tensors = named_tensors(model_or_sd)
    scores = []
    for name, flag in mask.items():
        score = tensors[name].detach().abs().float().flatten()  # (numel,)
        if not torch.isfinite(score).all():
            raise MaskError(f"weight '{name}' contains NaN or inf; magnitude pruning needs finite weights")
        score[~flag.flatten().to(score.device)] = -1.0  # already pruned: smallest of all, so they stay pruned
        scores.append(score)
    return prune_by_scores(scores, mask, count_to_prune(target_sparsity, mask.num_total))


# --- the schedule and rewinding --------------------------------------------------------------------


def sparsity_schedule(target: float = 0.9, rate: float = 0.1, kind: str = "original") -> list[float]:
    """Returns the sparsity after each IMP round, e.g. [0.1, 0.2, ..., 0.9]; the last entry is `target`.

    kind="original" (the paper's): each round removes `rate` of the ORIGINAL prunable weights.
    kind="remaining": each round removes `rate` of the weights still left: 1 - (1 - rate)^k.
    Values are rounded to 10 decimals so 0.1 * 3 is 0.3, not 0.30000000000000004.
    """
    if not isinstance(target, (int, float)) or not 0.0 <= target < 1.0:
        raise MaskError(f"target sparsity must be in [0, 1), got {target!r}")
    if not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise MaskError(f"pruning rate must be in (0, 1), got {rate!r}")
    if kind not in ("original", "remaining"):
        raise MaskError(f"unknown schedule kind '{kind}'; use 'original' or 'remaining'")
    level = (lambda k: k * rate) if kind == "original" else (lambda k: 1.0 - (1.0 - rate) ** k)
    levels, k = [], 1
    while target > 0 and (not levels or levels[-1] < target):
        if k > MAX_ROUNDS:  # a rate of 1e-6 would be 900,000 rounds, 1e-300 never reaches the target
            raise MaskError(f"pruning rate {rate:g} takes more than {MAX_ROUNDS} rounds to sparsity {target:g}; "
                            f"raise the rate")
        levels.append(min(round(level(k), 10), target))
        k += 1
    return levels


def rewind(model: nn.Module, theta: Mapping[str, torch.Tensor], mask: Mask | None = None,
           names: list[str] | None = None) -> list[str]:
    """Returns the names rewound: copies theta into the model (its tensors found in theta, or `names`), then masks.

    Afterwards unpruned weights equal theta bit for bit and pruned weights are 0 (with no mask,
    nothing is pruned). Tensors of the model absent from theta (e.g. a fresh task head when theta
    is a pre-trained BertModel) are left as they are; pass `names=[n for n in theta if not is_head(n)]`
    to keep the trained head instead.
    """
    tensors = named_tensors(model)
    if names is None:
        names = [name for name in tensors if name in theta]
        if not names:
            raise MaskError(f"theta shares no names with the model (theta has e.g. {next(iter(theta), 'nothing')}, "
                            f"the model {next(iter(tensors), 'nothing')}); snapshot the same kind of model")
    unknown = [name for name in names if name not in tensors or name not in theta]
    if unknown:
        raise MaskError(f"cannot rewind {', '.join(unknown[:3])}: not in both the model and theta")
    wrong = [name for name in names if tensors[name].shape != theta[name].shape]
    if wrong:
        raise MaskError(f"theta does not fit the model: shape mismatch for {', '.join(wrong[:3])}")
    if mask is not None:
        mask.check_fits(model)
    with torch.no_grad():
        for name in names:
            tensors[name].copy_(theta[name])
    if mask is not None:
        mask.apply_to(model)
    return names
