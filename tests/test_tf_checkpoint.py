"""Reading Google's TF BERT checkpoints without TensorFlow, against a fixture saved by real TensorFlow.

tests/fixtures/tf_bert_tiny/ was written by tests/fixtures/make_tf_fixture.py (TF 2.21, tf.compat.v1
Saver): the same random weights as a TF checkpoint with Google's names and, in hf/, as safetensors
with Hugging Face's names.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from minilth.errors import CheckpointError
from minilth.checkpoints.tensorflow import (crc32c, load_tf_state_dict, mask_crc, read_tf_checkpoint, read_tf_index,
                                   tf_to_hf_name, unmask_crc)
from minilth.checkpoints.tensorflow import _crc_update_slow
from minilth.checkpoints.pretrained import from_pretrained, read_safetensors

FIXTURE = Path(__file__).parent / "fixtures" / "tf_bert_tiny"
PREFIX = FIXTURE / "bert_model.ckpt"
DATA = FIXTURE / "bert_model.ckpt.data-00000-of-00001"
PROBE = np.arange(-3, 3, dtype=np.float64).reshape(2, 3) * 0.5  # as make_tf_fixture.py writes it
PROBE_INT = np.array([[-70000, -2, -1], [0, 1, 2**30]])


@pytest.fixture(scope="module")
def hf_state():
    return read_safetensors(FIXTURE / "hf" / "model.safetensors")


def copy_checkpoint(tmp_path: Path) -> Path:
    """A writable copy of the TF checkpoint; returns its prefix."""
    for file in FIXTURE.glob("bert_model.ckpt.*"):
        shutil.copy(file, tmp_path / file.name)
    return tmp_path / "bert_model.ckpt"


def test_every_tensor_equals_the_hugging_face_copy(hf_state):
    state = load_tf_state_dict(PREFIX)
    assert set(state) == set(hf_state)  # adam slots, global_step and the dtype probes are skipped
    assert len(state) == 5 + 2 * 16 + 2 + 4 + 1 + 2
    for name, tensor in state.items():
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()
        assert torch.equal(tensor, hf_state[name]), name


def test_kernels_are_transposed_and_seq_relationship_is_not():
    raw = read_tf_checkpoint(PREFIX)
    state = load_tf_state_dict(PREFIX)
    kernel = raw["bert/encoder/layer_1/intermediate/dense/kernel"]  # (H, I) = (32, 37) in TF
    assert kernel.shape == (32, 37)
    assert state["bert.encoder.layer.1.intermediate.dense.weight"].shape == (37, 32)
    assert np.array_equal(state["bert.encoder.layer.1.intermediate.dense.weight"].numpy(), kernel.T)
    nsp = raw["cls/seq_relationship/output_weights"]
    assert nsp.shape == (2, 32)
    assert np.array_equal(state["cls.seq_relationship.weight"].numpy(), nsp)


def test_raw_read_keeps_training_state_and_decodes_every_dtype():
    raw = read_tf_checkpoint(PREFIX)
    assert raw["global_step"].dtype == np.int64 and int(raw["global_step"]) == 12345
    bias = raw["bert/pooler/dense/bias"]
    assert np.array_equal(raw["bert/pooler/dense/bias/adam_m"], bias * 0.5)
    assert np.array_equal(raw["bert/pooler/dense/bias/adam_v"], bias * bias)
    for dtype in ("float16", "float64", "int32", "int64"):
        probe = raw[f"dtype_probe/{dtype}"]
        assert probe.dtype == np.dtype(dtype)
        assert np.array_equal(probe, PROBE_INT if dtype.startswith("int") else PROBE)
    bf16 = raw["dtype_probe/bfloat16"]  # widened exactly to float32
    assert bf16.dtype == np.float32 and np.array_equal(bf16, PROBE)


def test_index_header_and_entries():
    header, entries = read_tf_index(PREFIX)
    assert header == {"num_shards": 1, "big_endian": False}
    word = entries["bert/embeddings/word_embeddings"]
    assert word.dtype == 1 and word.shape == (99, 32) and word.size == 99 * 32 * 4
    assert word.crc32c is not None
    total = sum(e.size for e in entries.values())
    assert total == DATA.stat().st_size  # the entries tile the data file


@pytest.mark.parametrize("tf_name, hf_name", [
    ("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight"),
    ("bert/embeddings/position_embeddings", "bert.embeddings.position_embeddings.weight"),
    ("bert/embeddings/token_type_embeddings", "bert.embeddings.token_type_embeddings.weight"),
    ("bert/embeddings/LayerNorm/gamma", "bert.embeddings.LayerNorm.weight"),
    ("bert/encoder/layer_11/attention/output/LayerNorm/beta", "bert.encoder.layer.11.attention.output.LayerNorm.bias"),
    ("bert/encoder/layer_3/attention/self/query/kernel", "bert.encoder.layer.3.attention.self.query.weight"),
    ("bert/encoder/layer_0/output/dense/bias", "bert.encoder.layer.0.output.dense.bias"),
    ("bert/pooler/dense/kernel", "bert.pooler.dense.weight"),
    ("cls/predictions/output_bias", "cls.predictions.bias"),
    ("cls/predictions/transform/dense/kernel", "cls.predictions.transform.dense.weight"),
    ("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight"),
    ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight"),
    ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias"),
    ("output_weights", "classifier.weight"),  # run_classifier.py
    ("cls/squad/output_bias", "qa_outputs.bias"),  # run_squad.py
    ("bert/encoder/layer_0/attention/self/query/kernel/adam_m", None),
    ("bert/pooler/dense/bias/adam_v", None),
    ("global_step", None),
    ("bad_steps", None),
    ("dtype_probe/float16", None),
])
def test_tf_to_hf_name(tf_name, hf_name):
    assert tf_to_hf_name(tf_name) == hf_name


def test_crc32c_matches_the_byte_loop_at_every_size():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for n in (1, 1023, 1024, 1025, 4096 + 7, 100_003, 2**20 + 13):  # below/at/above the vectorised path
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == _crc_update_slow(0xFFFFFFFF, data) ^ 0xFFFFFFFF, n
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(value)) == value


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no TF checkpoint index .*bert_model.ckpt.index"):
        load_tf_state_dict(tmp_path / "bert_model.ckpt")


def test_missing_data_file_is_a_clear_error(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    (tmp_path / DATA.name).unlink()
    with pytest.raises(CheckpointError, match="missing TF checkpoint data file .*data-00000-of-00001"):
        load_tf_state_dict(prefix)


def test_truncated_data_file_is_a_clear_error(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    data = tmp_path / DATA.name
    data.write_bytes(data.read_bytes()[:DATA.stat().st_size // 2])  # cuts through BERT weights
    with pytest.raises(CheckpointError, match="is truncated: tensor .* download the checkpoint again") as error:
        load_tf_state_dict(prefix)
    assert "\n" not in str(error.value)


def test_malformed_index_is_a_clear_error(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    index = tmp_path / "bert_model.ckpt.index"
    raw = bytearray(index.read_bytes())
    raw[-1] ^= 0xFF  # the footer magic
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="not a readable TF checkpoint index: bad table magic"):
        load_tf_state_dict(prefix)
    raw[-1] ^= 0xFF
    raw[10] ^= 0x01  # a byte inside the first data block
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="fails its crc32c check"):
        read_tf_index(prefix)


def test_one_corrupted_byte_is_caught_by_the_crc(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    _, entries = read_tf_index(prefix)
    target = entries["cls/seq_relationship/output_bias"]  # 2 floats, 8 bytes
    data = tmp_path / DATA.name
    raw = bytearray(data.read_bytes())
    raw[target.offset + 3] ^= 0x10  # one bit of the first float's exponent byte
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="cls/seq_relationship/output_bias fails its crc32c check"):
        load_tf_state_dict(prefix)
    unchecked = load_tf_state_dict(prefix, verify_crc=False)  # the check, not the decoder, caught it
    assert unchecked["cls.seq_relationship.bias"][1] == read_tf_checkpoint(PREFIX)["cls/seq_relationship/output_bias"][1]


def test_from_pretrained_tf_checkpoint_gives_the_same_logits_as_the_hf_copy():
    tf_model = from_pretrained(FIXTURE, head="mlm")
    hf_model = from_pretrained(FIXTURE / "hf", head="mlm")
    assert not tf_model.load_report.missing
    assert set(tf_model.load_report.loaded) == set(hf_model.load_report.loaded)
    assert len(tf_model.load_report.loaded) == 44  # all but the NSP head: MLM keeps BERT's pooler, as the reference
    input_ids = torch.tensor([[2, 10, 20, 30, 40, 3, 50, 60, 3, 0], [2, 11, 4, 12, 3, 0, 0, 0, 0, 0]])
    attention_mask = (input_ids != 0).long()
    token_type_ids = torch.tensor([[0] * 6 + [1] * 4, [0] * 10])
    with torch.no_grad():
        tf_logits = tf_model(input_ids, attention_mask, token_type_ids).logits  # (2, 10, 99)
        hf_logits = hf_model(input_ids, attention_mask, token_type_ids).logits
    assert tf_logits.shape == (2, 10, 99)
    assert torch.equal(tf_logits, hf_logits)
    assert tf_logits.std() > 0.5  # real, varied logits, not a degenerate all-zero model


def test_pretraining_head_loads_pooler_and_next_sentence_weights_too():
    tf_model = from_pretrained(FIXTURE, head="pretraining")
    hf_model = from_pretrained(FIXTURE / "hf", head="pretraining")
    assert not tf_model.load_report.missing and not tf_model.load_report.unexpected
    input_ids = torch.tensor([[2, 10, 20, 3, 30, 40, 3]])
    token_type_ids = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    with torch.no_grad():
        tf_out = tf_model(input_ids, token_type_ids=token_type_ids)
        hf_out = hf_model(input_ids, token_type_ids=token_type_ids)
    assert torch.equal(tf_out.seq_relationship_logits, hf_out.seq_relationship_logits)
    assert tf_out.seq_relationship_logits.abs().max() > 0.05
