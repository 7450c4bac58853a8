"""Masked-LM data: WikiText reading, [CLS] block [SEP] features, 80/10/10 masking statistics, metrics."""
import math

import pytest
import torch

from minilth.errors import DataError
from minilth.data.mlm import (cut_blocks, load_mlm, mask_batch, mask_tokens, mlm_batch_stats, mlm_metrics,
                         read_corpus, special_tokens_mask)

WIKITEXT = """ 
 = Valkyria Chronicles III = 
 
 Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ playing video game developed by Sega .
 The game began development in 2010 , carrying over a large portion of the work done on Valkyria Chronicles II .
 
 = = Gameplay = = 
 
 As with previous Valkyira Chronicles games , Valkyria Chronicles III is a tactical role @-@ playing game .
 
 = = = Plot summary = = = 
 The game takes place during the Second Europan War . Café crème brûlée 東京 😀 .
"""
PROSE = [
    "Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ playing video game developed by Sega .",
    "The game began development in 2010 , carrying over a large portion of the work done on Valkyria Chronicles II .",
    "As with previous Valkyira Chronicles games , Valkyria Chronicles III is a tactical role @-@ playing game .",
    "The game takes place during the Second Europan War . Café crème brûlée 東京 😀 .",
]


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "wiki.valid.raw"
    path.write_text(WIKITEXT, encoding="utf-8")
    return path


def test_read_corpus_drops_headings_and_blank_lines(corpus):
    assert read_corpus(corpus) == PROSE


def test_read_corpus_missing_file_says_how_to_download(tmp_path):
    with pytest.raises(DataError, match="data_scripts/download_wikitext.py"):
        read_corpus(tmp_path / "wiki.train.raw")


def test_a_binary_corpus_is_one_line_naming_it(tmp_path, minilm_tokenizer):
    path = tmp_path / "wiki.train.raw"
    path.write_bytes(b"prose\n" * 1000 + bytes(range(256)) * 100)
    with pytest.raises(DataError, match=rf"{path} is not UTF-8 text \(invalid start byte, byte \d+ of a block read "
                                        rf"near byte \d+\): is it WikiText's raw text\? download it again"):
        load_mlm(path, minilm_tokenizer)


def test_cut_blocks_drops_the_short_tail():
    assert cut_blocks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5]]
    assert cut_blocks(list(range(2)), 3) == []


@pytest.mark.parametrize("lines_per_batch", [1, 1000])
def test_blocks_are_cls_tokens_sep_of_max_length(corpus, minilm_tokenizer, lines_per_batch):
    tok = minilm_tokenizer
    stream = [i for line in PROSE for i in tok.backend.encode(line, add_special_tokens=False).ids]
    max_length = 16
    dataset = load_mlm(corpus, tok, max_length=max_length, lines_per_batch=lines_per_batch)
    assert len(dataset) == len(stream) // (max_length - 2) and len(dataset) >= 5
    for k, feature in enumerate(dataset.features):
        ids = feature["input_ids"]
        assert len(ids) == max_length and ids[0] == tok.cls_id and ids[-1] == tok.sep_id
        assert ids[1:-1] == stream[k * 14:(k + 1) * 14]  # consecutive, nothing skipped, no heading tokens
        assert feature["token_type_ids"] == [0] * max_length and feature["attention_mask"] == [1] * max_length
    # "Gameplay" and "summary" appear only in headings
    heading_only = tok.backend.encode("gameplay summary", add_special_tokens=False).ids
    assert not set(heading_only) & {i for f in dataset.features for i in f["input_ids"]}
    assert load_mlm(corpus, tok, max_length=max_length, max_examples=2).features == dataset.features[:2]


def test_a_corpus_shorter_than_a_block_is_an_error(corpus, minilm_tokenizer):
    with pytest.raises(DataError, match="smaller max_length"):
        load_mlm(corpus, minilm_tokenizer, max_length=512)


VOCAB, MASK_ID, PAD_ID, CLS_ID, SEP_ID = 30522, 103, 0, 101, 102


def big_batch(seed=0):
    """(400, 512) ids: [CLS] words [SEP] then padding on every other row; 200k tokens in all."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, VOCAB, (400, 512), generator=g)  # (B, T), never a special id
    ids[:, 0] = CLS_ID
    ids[:, -1] = SEP_ID
    ids[::2, 400:] = PAD_ID
    ids[::2, 399] = SEP_ID
    return ids


def test_masking_statistics_are_15_percent_then_80_10_10():
    ids = big_batch()
    special = special_tokens_mask(ids, {PAD_ID, CLS_ID, SEP_ID, MASK_ID, 100})
    original = ids.clone()
    masked, labels = mask_tokens(ids, special, MASK_ID, VOCAB, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ids, original)  # the input is untouched

    chosen = labels != -100
    assert not chosen[special].any()  # [CLS], [SEP] and padding are never chosen
    assert torch.equal(labels[chosen], original[chosen])
    assert torch.equal(masked[~chosen], original[~chosen])
    n_candidates = int((~special).sum())
    assert n_candidates > 150_000
    assert abs(chosen.sum().item() / n_candidates - 0.15) < 0.005

    n_chosen = chosen.sum().item()
    to_mask = (masked == MASK_ID) & chosen
    unchanged = (masked == original) & chosen
    to_random = chosen & ~to_mask & ~unchanged
    # a random id equals the original with chance 1/V, which moves 0.1 by about 3e-6: negligible
    assert abs(to_mask.sum().item() / n_chosen - 0.8) < 0.01
    assert abs(to_random.sum().item() / n_chosen - 0.1) < 0.01
    assert abs(unchanged.sum().item() / n_chosen - 0.1) < 0.01
    random_ids = masked[to_random]
    assert random_ids.min() >= 0 and random_ids.max() < VOCAB
    assert random_ids.float().std() > VOCAB / 4  # spread over the vocabulary, not one id


def test_masking_is_reproducible_with_a_seed():
    ids = big_batch()[:50]
    special = special_tokens_mask(ids, {PAD_ID, CLS_ID, SEP_ID})
    run = lambda seed: mask_tokens(ids, special, MASK_ID, VOCAB, generator=torch.Generator().manual_seed(seed))
    first, again, other = run(7), run(7), run(8)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1]) and not torch.equal(first[0], other[0])


def test_mask_tokens_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match="must match"):
        mask_tokens(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool), MASK_ID, VOCAB)


def test_mask_batch_never_masks_padding(minilm_tokenizer):
    tok = minilm_tokenizer
    ids = torch.full((64, 40), tok.pad_id)  # (B, T)
    ids[:, :20] = torch.randint(1000, tok.vocab_size, (64, 20))
    attention = torch.zeros_like(ids)
    attention[:, :20] = 1
    batch = {"input_ids": ids, "attention_mask": attention, "token_type_ids": torch.zeros_like(ids)}
    out = mask_batch(batch, tok, probability=0.5, generator=torch.Generator().manual_seed(0))
    chosen = out["labels"] != -100
    assert not chosen[:, 20:].any() and chosen[:, :20].float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert torch.equal(batch["input_ids"], ids) and out["attention_mask"] is attention


def test_mlm_stats_and_metrics_by_hand():
    # two scored tokens with 3-way logits: token 1 right with p = e^2/(e^2+2), token 2 wrong (uniform)
    logits = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]])  # (1, 3, V=3)
    labels = torch.tensor([[1, 2, -100]])
    loss_sum, n, correct = mlm_batch_stats(logits, labels)
    expected = -math.log(math.e ** 2 / (math.e ** 2 + 2)) + math.log(3)
    assert (n, correct) == (2, 1) and loss_sum == pytest.approx(expected, rel=1e-6)
    metrics = mlm_metrics(loss_sum, n, correct)
    assert metrics["accuracy"] == 0.5
    assert metrics["perplexity"] == pytest.approx(math.exp(expected / 2), rel=1e-6)
    with pytest.raises(ValueError, match="no masked tokens"):
        mlm_metrics(0.0, 0, 0)


def test_blocks_collate_and_mask(corpus, minilm_tokenizer):
    from minilth.data.batches import collate
    dataset = load_mlm(corpus, minilm_tokenizer, max_length=16)
    batch = mask_batch(collate(dataset.features), minilm_tokenizer, generator=torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape == batch["labels"].shape == (len(dataset), 16)
    chosen = batch["labels"] != -100
    assert chosen.any() and not chosen[:, 0].any() and not chosen[:, -1].any()  # never [CLS] / [SEP]
