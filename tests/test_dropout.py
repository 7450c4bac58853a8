"""Dropout from 16 random bits per element: the same distribution as torch's, tested by its statistics."""
import math

import pytest
import torch

from minilth.fast.dropout import attention, dropout_keep_mask
from minilth.model import BertConfig, Dropout, build_model


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """model.py's Dropout module, as every layer calls it."""
    return Dropout(p).train(training)(x)

KEEP = 58982 / 65536  # round(0.9 * 2**16) / 2**16: the keep probability 16 bits can give for 0.9
DRAWS = 1 << 20


def test_keep_rate_is_0_9_within_the_threshold_error():
    torch.manual_seed(0)
    keep = dropout_keep_mask(torch.Size([DRAWS]), 0.9, torch.device("cpu"))
    standard_error = math.sqrt(KEEP * (1 - KEEP) / DRAWS)  # 2.9e-4
    assert abs(keep.float().mean().item() - KEEP) < 4 * standard_error
    assert abs(KEEP - 0.9) < 6.2e-6  # the integer threshold's error


@pytest.mark.parametrize("keep_prob", [0.5, 0.75, 0.97])
def test_other_keep_probabilities(keep_prob):
    torch.manual_seed(1)
    rate = dropout_keep_mask(torch.Size([DRAWS]), keep_prob, torch.device("cpu")).float().mean().item()
    assert abs(rate - keep_prob) < 4 * math.sqrt(keep_prob * (1 - keep_prob) / DRAWS) + 2 ** -16


def test_elements_are_independent():
    """Four elements share each 64-bit word: neighbours and every lane of the word must be uncorrelated."""
    torch.manual_seed(2)
    keep = dropout_keep_mask(torch.Size([DRAWS // 4, 4]), 0.9, torch.device("cpu")).float()  # (words, lane)
    standard_error = 1 / math.sqrt(DRAWS // 4)
    correlation = torch.corrcoef(keep.T)  # (4, 4), lanes of the same word
    assert (correlation - torch.eye(4)).abs().max() < 4 * standard_error
    lane_rates = keep.mean(0)
    assert (lane_rates - KEEP).abs().max() < 4 * math.sqrt(KEEP * (1 - KEEP) / (DRAWS // 4))
    flat = keep.flatten()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1]) < 4 / math.sqrt(DRAWS)


def test_survivors_are_scaled_exactly_and_the_rest_are_zero():
    torch.manual_seed(3)
    x = torch.randn(256, 384)
    out = dropout(x, 0.1, training=True)
    kept = out != 0
    assert torch.equal(out[kept], x[kept] * (1 / 0.9))
    assert 0.85 < kept.float().mean() < 0.95


def test_new_masks_every_call_and_the_same_under_a_seed():
    x = torch.ones(64, 64)
    torch.manual_seed(4)
    first, second = dropout(x, 0.1, True), dropout(x, 0.1, True)
    torch.manual_seed(4)
    again = dropout(x, 0.1, True)
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_no_dropout_in_eval_or_at_p_0_and_all_dropped_at_p_1():
    x = torch.randn(8, 16)
    assert torch.equal(dropout(x, 0.1, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))
    layer = Dropout(0.1)
    assert isinstance(layer, torch.nn.Dropout) and layer.state_dict() == {}


def test_bf16_keeps_its_dtype():
    torch.manual_seed(5)
    out = dropout(torch.ones(1000, dtype=torch.bfloat16), 0.1, True)
    assert out.dtype == torch.bfloat16 and set(out.unique().tolist()) <= {0.0, float(torch.tensor(1 / 0.9,
                                                                                      dtype=torch.bfloat16))}


def test_attention_dropout_drops_probabilities_with_the_same_masks():
    """softmax(q k^T / sqrt(d) + key mask), each probability kept with the mask drawn from the same seed, / 0.9, @ v."""
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))  # (b, nh, L, d)
    key_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    torch.manual_seed(7)
    got = attention(q, k, v, key_mask, dropout_p=0.1)
    torch.manual_seed(7)
    keep = dropout_keep_mask(torch.Size([2, 3, 5, 5]), 0.9, torch.device("cpu"))
    scores = (q @ k.transpose(-2, -1) / 2).masked_fill(~key_mask, float("-inf"))
    expected = (scores.softmax(-1) * keep / 0.9) @ v
    assert (got - expected).abs().max() < 1e-5
    assert (attention(q, k, v, key_mask, 0.0) - scores.softmax(-1) @ v).abs().max() < 1e-5


def test_training_mode_draws_dropout_and_eval_mode_does_not():
    torch.manual_seed(8)
    model = build_model(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32), head="classification")
    input_ids = torch.randint(5, 50, (4, 9))
    attention_mask = (torch.arange(9)[None] < torch.tensor([9, 4, 7, 2])[:, None]).long()
    model.train()
    assert not torch.equal(model(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits)
    model.eval()
    assert torch.equal(model(input_ids, attention_mask).logits, model(input_ids, attention_mask).logits)
