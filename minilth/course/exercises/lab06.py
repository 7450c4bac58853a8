"""Lab 06: MLM's 80/10/10 masking rule, and moving a mask onto another task's model."""
from __future__ import annotations

import torch

from ...data.batches import IGNORE_INDEX
from ...lottery.baselines import random_prune
from ...lottery.mask_transfer import transfer_mask as library_transfer_mask
from ...model import BertConfig, BertModel
from ...prune import Mask, is_pooler, named_tensors, prunable_names
from ..exercise import TINY, Exercise, Fail, mask_of, returned, tiny_model

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103  # BERT's ids of its special tokens
VOCAB = 1000


def _masking_calls(seed: int) -> list[tuple]:
    """512 sequences of 8 to 64 tokens, padded to 64: [CLS] text [SEP] [PAD]..., a few [UNK] in the text."""
    generator = torch.Generator().manual_seed(seed)
    rows, width = 512, 64
    lengths = torch.randint(8, width + 1, (rows,), generator=generator)
    attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()  # (B, T)
    input_ids = torch.randint(MASK + 1, VOCAB, (rows, width), generator=generator)
    input_ids[torch.rand(rows, width, generator=generator) < 0.02] = UNK
    input_ids[:, 0], input_ids[torch.arange(rows), lengths - 1] = CLS, SEP
    input_ids[attention_mask == 0] = PAD
    special = frozenset((PAD, UNK, CLS, SEP, MASK))
    return [(input_ids.clone(), attention_mask, special, MASK, VOCAB, torch.Generator().manual_seed(draw))
            for draw in (seed, seed, seed + 1)]


def _judge_masking(calls: list[tuple], outcomes: list[dict]) -> None:
    (input_ids, attention_mask, special, mask_id, vocab_size, _), _, _ = calls
    seen = [returned(outcome) for outcome in outcomes]
    pairs = [seen_one["out"] for seen_one in seen]
    if not all(isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, torch.Tensor)
                                                                   and t.shape == input_ids.shape for t in pair)
               for pair in pairs):
        raise Fail(f"return (masked input_ids, labels): two tensors of the input's shape {tuple(input_ids.shape)}")
    if not torch.equal(seen[0]["input_after"], input_ids):
        raise Fail("changed input_ids in place: work on a copy (input_ids.clone())")
    masked, labels = pairs[0]
    chosen = labels != IGNORE_INDEX  # (B, T)
    maskable = (attention_mask == 1) & ~torch.isin(input_ids, torch.tensor(sorted(special)))  # (B, T)
    if chosen.float().mean() > 0.5:
        raise Fail(f"labels must be {IGNORE_INDEX} at every position not chosen (the loss ignores them) and the "
                   f"original id at the chosen ones")
    if (labels[chosen] != input_ids[chosen]).any():
        raise Fail("labels must hold the original id at every chosen position")
    if (chosen & (attention_mask == 0)).any():
        raise Fail(f"chose {int((chosen & (attention_mask == 0)).sum())} padding positions: 15% of the padding was "
                   f"masked; choose only real tokens (attention_mask 1)")
    if (chosen & ~maskable).any():
        raise Fail("special tokens masked: [CLS], [SEP] and the other special_ids are never chosen")
    if (masked[~chosen] != input_ids[~chosen]).any():
        raise Fail(f"changed tokens that were not chosen: only the chosen tokens change (their labels are the "
                   f"original ids, {IGNORE_INDEX} elsewhere)")
    share = chosen.sum().item() / maskable.sum().item()
    if abs(share - 0.15) > 0.02:
        raise Fail(f"chose {100 * share:.1f}% of the tokens that may be chosen, not 15%")
    to_mask, kept = chosen & (masked == mask_id), chosen & (masked == input_ids)
    replaced = chosen & ~to_mask & ~kept
    shares = [part.sum().item() / chosen.sum().item() for part in (to_mask, replaced, kept)]
    if abs(shares[0] - 0.8) > 0.05 or abs(shares[1] - 0.1) > 0.04 or abs(shares[2] - 0.1) > 0.04:
        raise Fail(f"of the chosen tokens {100 * shares[0]:.0f}% became [MASK], {100 * shares[1]:.0f}% a random token "
                   f"and {100 * shares[2]:.0f}% stayed: BERT's rule is 80%, 10%, 10% (of the 20% not masked, half "
                   f"are replaced)")
    if ((masked[replaced] < 0) | (masked[replaced] >= vocab_size)).any():
        raise Fail("random replacements outside the vocabulary: draw ids in [0, vocab_size)")
    if not all(torch.equal(a, b) for a, b in zip(pairs[1], pairs[0])):
        raise Fail("not reproducible from the generator: draw every random number with generator=generator")
    if all(torch.equal(a, b) for a, b in zip(pairs[2], pairs[0])):
        raise Fail("another generator gave the same masking: draw every random number from the generator given")


MASK_TOKENS = Exercise("mask_tokens", _masking_calls, _judge_masking,
                       library=("minilth.data.mlm.mask_tokens", "minilth.data.mlm.mask_batch",
                                "minilth.data.mlm.special_tokens_mask"),
                       observe=lambda args, out: {"out": out, "input_after": args[0]})


def _transfer_calls(seed: int) -> list[tuple]:
    classifier, mlm, encoder = (tiny_model(seed, head) for head in ("classification", "mlm", "base"))
    torch.manual_seed(seed)
    no_pooler = BertModel(BertConfig(**TINY), add_pooling_layer=False)  # names without `bert.`, and no pooler
    deeper = tiny_model(seed, num_hidden_layers=3)

    def found_on(model, include_pooler: bool = True) -> Mask:  # a mask as IMP leaves it: half the weights, at random
        return random_prune(model, Mask.dense(model, prunable_names(model, include_pooler=include_pooler)), 0.5,
                            seed=seed + len(named_tensors(model)))

    return [(found_on(mlm), classifier),  # MLM -> a classifier: the same names
            (found_on(encoder), classifier),  # a bare encoder's mask (no `bert.`) -> a classifier
            (found_on(classifier), encoder),  # and back
            (found_on(mlm, include_pooler=False), classifier),  # found with the pooler kept dense: it stays dense
            (found_on(classifier), no_pooler),  # onto an encoder without a pooler: the pooler's entry goes
            (found_on(deeper), classifier)]  # another model's mask: refused


def _judge_transfer(calls: list[tuple], outcomes: list[dict]) -> None:
    *moves, (_, last_target) = calls
    for (mask, target), outcome in zip(moves, outcomes):
        expected, got = library_transfer_mask(mask, target), mask_of(returned(outcome))
        if set(got.names()) == set(expected.names()) and all(torch.equal(got[n], expected[n]) for n in expected):
            continue
        foreign = [name for name in got.names() if name not in named_tensors(target)]
        if any(is_pooler(name) for name in foreign) and not any(is_pooler(name) for name in named_tensors(target)):
            raise Fail("the target model has no pooler: drop the mask's pooler entry")
        if foreign:
            raise Fail(f"the mask moved onto the wrong names: {foreign[0]} is not a tensor of the target model; only "
                       f"the `bert.` prefix differs between the models' names")
        extra, missing = set(got.names()) - set(expected.names()), set(expected.names()) - set(got.names())
        if any(is_pooler(name) for name in extra):
            raise Fail("added a pooler entry the source mask does not have: a mask found with the pooler kept dense "
                       "leaves it out, and so must the moved one (its sparsity is over the same weights)")
        if missing:
            raise Fail(f"the moved mask lacks {sorted(missing)[0]}: move every matrix of the source mask")
        if extra:
            raise Fail(f"the moved mask has {sorted(extra)[0]}, which the source mask does not prune")
        wrong = next(name for name in expected.names() if not torch.equal(got[name], expected[name]))
        raise Fail(f"the mask moved onto the wrong names: {wrong} holds another matrix's flags; each matrix keeps "
                   f"its own, under its name in the target")
    if "returned" in outcomes[-1]:
        raise Fail(f"moved a mask made for another model (3 layers, onto {last_target.config.num_hidden_layers}) "
                   f"instead of refusing it: raise an error when the mask does not cover the target's prunable "
                   f"matrices")


TRANSFER_MASK = Exercise("transfer_mask", _transfer_calls, _judge_transfer,
                         library=("minilth.lottery.mask_transfer.transfer_mask",))

EXERCISES = (MASK_TOKENS, TRANSFER_MASK)
