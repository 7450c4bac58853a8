"""Batching: dynamic padding, dtypes, reproducible shuffles, and length grouping on real RTE features."""
import numpy as np
import pytest
import torch

from minilth.data.batches import batch_indices, batches, collate, num_batches
from minilth.errors import MinilthError
from minilth.data.folders import load_dataset


def feature(length, label, **extra):
    return {"input_ids": list(range(1, length + 1)), "token_type_ids": [1] * length,
            "attention_mask": [1] * length, "labels": label, **extra}


def test_collate_pads_to_the_longest_with_the_right_values_and_dtypes():
    batch = collate([feature(3, 1, example_index=7), feature(5, 0, example_index=8)], pad_id=9)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 9, 9], [1, 2, 3, 4, 5]]
    assert batch["token_type_ids"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]
    assert batch["example_index"].dtype == torch.long and batch["example_index"].tolist() == [7, 8]
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (2, 5)


def test_collate_pads_to_a_fixed_length_and_refuses_longer_features():
    batch = collate([feature(3, 1), feature(5, 0)], pad_id=9, pad_to=7)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 9, 9, 9, 9], [1, 2, 3, 4, 5, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0]]
    mlm = collate([feature(2, [5, -100])], pad_to=4)
    assert mlm["labels"].tolist() == [[5, -100, -100, -100]] and mlm["token_type_ids"].tolist() == [[1, 1, 0, 0]]
    assert [b["input_ids"].shape for b in batches([feature(2, 0), feature(3, 1)], 1, pad_to=6)] == [(1, 6)] * 2
    with pytest.raises(MinilthError, match="more than pad_to=4"):
        collate([feature(5, 0)], pad_to=4)


def test_collate_regression_span_and_mlm_targets():
    scores = collate([feature(2, 4.5), feature(3, 0.25)])
    assert scores["labels"].dtype == torch.float32 and scores["labels"].tolist() == [4.5, 0.25]
    span = [{**feature(4, 0), "start_positions": 1, "end_positions": 2} for _ in range(2)]
    span_batch = collate([{k: v for k, v in f.items() if k != "labels"} for f in span])
    assert span_batch["start_positions"].dtype == torch.long and span_batch["end_positions"].tolist() == [2, 2]
    mlm = collate([feature(2, [5, -100]), feature(4, [-100, 6, -100, 7])])
    assert mlm["labels"].tolist() == [[5, -100, -100, -100], [-100, 6, -100, 7]]
    assert mlm["labels"].shape == mlm["input_ids"].shape == (2, 4)


def test_collate_rejects_mixed_features():
    with pytest.raises(MinilthError, match="feature 1 has keys"):
        collate([feature(2, 1), {"input_ids": [1], "token_type_ids": [0], "attention_mask": [1]}])


def test_batches_cover_everything_in_order_and_count():
    features = [feature(1 + i % 7, i) for i in range(70)]
    seen = [b["labels"].tolist() for b in batches(features, 16)]
    assert [len(s) for s in seen] == [16, 16, 16, 16, 6] and sum(seen, []) == list(range(70))
    assert num_batches(70, 16) == 5 and num_batches(70, 16, drop_last=True) == 4 and num_batches(64, 16) == 4
    assert len(list(batches(features, 16, drop_last=True))) == 4
    with pytest.raises(MinilthError, match="batch_size"):
        num_batches(70, 0)


def test_shuffle_is_reproducible_by_seed_and_leaves_the_global_rng_alone():
    features = [feature(1 + i % 5, i) for i in range(100)]
    torch.manual_seed(0)
    np.random.seed(0)
    expected_torch, expected_numpy = torch.rand(1), np.random.rand()
    torch.manual_seed(0)
    np.random.seed(0)
    first = [b["labels"].tolist() for b in batches(features, 10, shuffle=True, seed=3)]
    assert torch.rand(1) == expected_torch and np.random.rand() == expected_numpy  # global RNGs untouched
    again = [b["labels"].tolist() for b in batches(features, 10, shuffle=True, seed=3)]
    other = [b["labels"].tolist() for b in batches(features, 10, shuffle=True, seed=4)]
    assert first == again and first != other
    assert sorted(sum(first, [])) == list(range(100)) and sum(first, []) != list(range(100))


def rte_features(data_dir, tokenizer):
    return load_dataset("rte", data_dir, "train", tokenizer).features


def padded_tokens(features, groups):
    lengths = np.array([len(f["input_ids"]) for f in features])
    return sum(int(len(g) * lengths[g].max()) for g in groups)


def check_group_by_length(features, batch_size):
    """Grouped batches cover every feature once, longest first, reproducibly, with less padding than shuffled ones."""
    lengths = [len(f["input_ids"]) for f in features]
    shuffled = batch_indices(lengths, batch_size, shuffle=True, seed=0)
    grouped = batch_indices(lengths, batch_size, shuffle=True, seed=0, group_by_length=True)
    assert sorted(np.concatenate(grouped).tolist()) == list(range(len(features)))
    assert len(grouped) == num_batches(len(features), batch_size)
    assert padded_tokens(features, grouped) < 0.8 * padded_tokens(features, shuffled)
    assert max(lengths[i] for i in grouped[0]) == max(lengths)  # longest batch first
    again = batch_indices(lengths, batch_size, seed=0, group_by_length=True)
    other_seed = batch_indices(lengths, batch_size, seed=1, group_by_length=True)
    assert [g.tolist() for g in grouped] == [g.tolist() for g in again]
    assert [g.tolist() for g in grouped] != [g.tolist() for g in other_seed]
    dropped = batch_indices(lengths, batch_size, seed=0, group_by_length=True, drop_last=True)
    assert len(dropped) == len(features) // batch_size and all(len(g) == batch_size for g in dropped)
    batch = next(batches(features, batch_size, seed=0, group_by_length=True, pad_id=0))
    assert batch["input_ids"].shape == (batch_size, max(lengths))
    assert int(batch["attention_mask"].sum()) == sum(lengths[i] for i in grouped[0])  # real tokens only
    assert int((batch["input_ids"] == 0).sum()) == batch_size * max(lengths) - sum(lengths[i] for i in grouped[0])


def test_group_by_length_reduces_padding_on_the_rte_sample(glue_dir, minilm_tokenizer):
    features = rte_features(glue_dir, minilm_tokenizer)
    assert len(features) == 40
    check_group_by_length(features, 8)


def test_group_by_length_reduces_padding_on_all_of_rte(full_glue_dir, minilm_tokenizer):
    features = rte_features(full_glue_dir, minilm_tokenizer)
    assert len(features) == 2490 and num_batches(2490, 32) == 78
    check_group_by_length(features, 32)
