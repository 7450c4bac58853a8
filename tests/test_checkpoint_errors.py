"""Damaged checkpoint files (config.json, safetensors, .bin, vocab.txt): one line that names the file and what to do."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY
from minilth.errors import CheckpointError
from minilth.checkpoints.pretrained import from_pretrained, load_tokenizer, read_safetensors


def weights_cli(checkpoint) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minilth.weights", str(checkpoint)], capture_output=True, text=True)


def assert_one_line_error(result: subprocess.CompletedProcess, *parts: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0]


def folder_with_config(tmp_path, config) -> Path:
    """A checkpoint folder whose config.json holds `config` (text as it is, else JSON), and an empty .bin.

    The config is read before the weights, so the .bin is never opened when the config is refused.
    """
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    text = config if isinstance(config, (str, bytes)) else json.dumps(config)
    (folder / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    (folder / "pytorch_model.bin").touch()
    return folder


# --- config.json -------------------------------------------------------------------------------

BAD_CONFIG_VALUES = [
    ({"hidden_size": "32"}, "hidden_size must be a whole number of at least 1, got '32'"),
    ({"num_hidden_layers": True}, "num_hidden_layers must be a whole number of at least 1, got True"),
    ({"intermediate_size": 64.0}, "intermediate_size must be a whole number of at least 1, got 64.0"),
    ({"hidden_size": -32}, "hidden_size must be a whole number of at least 1, got -32"),
    ({"vocab_size": 0}, "vocab_size must be a whole number of at least 1, got 0"),
    ({"num_attention_heads": 0}, "num_attention_heads must be a whole number of at least 1, got 0"),
    ({"num_attention_heads": 5}, "hidden_size 32 is not a multiple of num_attention_heads 5"),
    ({"pad_token_id": 40000}, "pad_token_id must be a token id below vocab_size 30522, got 40000"),
    ({"hidden_dropout_prob": "0.1"}, "hidden_dropout_prob must be a probability in [0, 1], got '0.1'"),
    ({"layer_norm_eps": 0}, "layer_norm_eps must be a positive number, got 0"),
    ({"hidden_act": ["gelu"]}, "hidden_act must be one of gelu, gelu_new, gelu_pytorch_tanh, relu, got ['gelu']"),
    ({"vocab_size": 10**10}, "this config describes a model of 3.2e+11 parameters (vocab_size 10000000000, hidden_size "
                             "32, 2 layers), far beyond any BERT: check its sizes"),
]


@pytest.mark.parametrize("values, problem", BAD_CONFIG_VALUES, ids=[json.dumps(v) for v, _ in BAD_CONFIG_VALUES])
def test_config_values_of_the_wrong_type_or_range(tmp_path, values, problem):
    folder = folder_with_config(tmp_path, {**TINY, **values})
    with pytest.raises(CheckpointError) as error:
        from_pretrained(folder)
    assert str(error.value) == (f"{folder / 'config.json'}: {problem}; correct the file or download the "
                                "checkpoint's config again")


@pytest.mark.parametrize("text, problem", [
    ("[32, 2, 4]", "a BERT config is a JSON object of names and values, not a list"),
    ('"bert"', "a BERT config is a JSON object of names and values, not a str"),
    ("{'hidden_size': 32}", "cannot read the BERT config"),
    (b'{"hidden_act": "g\xe9lu"}', "cannot read the BERT config"),
], ids=["list", "string", "not-json", "not-utf8"])
def test_config_that_is_not_a_json_object(tmp_path, text, problem):
    folder = folder_with_config(tmp_path, text)
    with pytest.raises(CheckpointError, match="download the checkpoint's config again") as error:
        from_pretrained(folder)
    assert problem in str(error.value) and str(folder / "config.json") in str(error.value)


# --- safetensors headers -----------------------------------------------------------------------


def write_safetensors(path, header, body: bytes):
    """A .safetensors file written by hand: 8-byte header length, JSON header, raw bytes."""
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + body)
    return path


SIX_FLOATS = torch.arange(6, dtype=torch.float32).numpy().tobytes()  # 24 bytes


def test_hand_written_safetensors_reads_back(tmp_path):
    """The control for the cases below: the same writer with a consistent header gives the tensor."""
    path = write_safetensors(tmp_path / "model.safetensors", {
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, SIX_FLOATS)
    assert torch.equal(read_safetensors(path)["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))


BAD_HEADERS = [
    ({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}},
     "tensor 'w' of shape [2, 3] and dtype F32 needs 24 bytes, but its range [0, 16) holds 16"),
    ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]},
      "v": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 8]}},
     "tensor 'v' of shape [2, 3] and dtype F16 needs 12 bytes, but its range [0, 8) holds 8"),
    ({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 8]}}, "tensor 'w' begins at byte 16, after its end 8"),
    ({"w": [0, 24]}, "tensor 'w' has a list as its header entry, not an object"),
    ({"w": "F32"}, "tensor 'w' has a str as its header entry, not an object"),
    ({"w": {"dtype": "F32", "shape": [6]}}, "tensor 'w' has no data_offsets in its header entry"),
    ({"w": {"shape": [6], "data_offsets": [0, 24]}}, "tensor 'w' has no dtype in its header entry"),
    ({"w": {"dtype": "F32", "shape": [-1, 6], "data_offsets": [0, 24]}}, "has shape [-1, 6], not a list of sizes"),
    ({"w": {"dtype": "F32", "shape": "2x3", "data_offsets": [0, 24]}}, "has shape '2x3', not a list of sizes"),
    ({"w": {"dtype": "F32", "shape": [6], "data_offsets": [0]}}, "has data_offsets [0], not [begin, end]"),
    ({"w": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24.0]}}, "has data_offsets [0, 24.0], not [begin, end]"),
    ([{"w": {}}], "has a corrupt safetensors header (not a JSON object)"),
]


@pytest.mark.parametrize("header, problem", BAD_HEADERS)
def test_safetensors_header_that_does_not_fit_its_bytes(tmp_path, header, problem):
    path = write_safetensors(tmp_path / "model.safetensors", header, SIX_FLOATS)
    with pytest.raises(CheckpointError) as error:
        read_safetensors(path)
    message = str(error.value)
    assert str(path) in message and problem in message and message.endswith("download it again")


@pytest.mark.parametrize("dtype", ["F8_E4M3", ["F32"]])
def test_safetensors_dtype_that_minilth_cannot_read(tmp_path, dtype):
    path = write_safetensors(tmp_path / "model.safetensors", {"w": {"dtype": dtype, "shape": [6],
                                                                    "data_offsets": [0, 24]}}, SIX_FLOATS)
    with pytest.raises(CheckpointError, match=r"unsupported dtype .*: convert the file to one of them"):
        read_safetensors(path)


# --- .bin files --------------------------------------------------------------------------------


@pytest.mark.parametrize("content, problem", [
    ([torch.zeros(2)], " holds a value of type list, not a dict of named tensors"),
    (torch.zeros(2), " holds a value of type Tensor, not a dict of named tensors"),
    ({"bert.pooler.dense.bias": torch.zeros(32), "step": 100}, ": entry 'step' is of type int, not a tensor"),
    ({"state_dict": {"bert.pooler.dense.bias": [0.0] * 32}},
     ": entry 'bert.pooler.dense.bias' is of type list, not a tensor"),
    ({7: torch.zeros(2)}, ": key 7 is not a tensor name"),
], ids=["list", "tensor", "number-value", "nested-list", "int-key"])
def test_bin_that_is_not_a_dict_of_tensors(tmp_path, tiny_checkpoint, content, problem):
    folder = folder_with_config(tmp_path, (tiny_checkpoint / "config.json").read_text())
    torch.save(content, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as error:
        from_pretrained(folder)
    assert str(error.value) == (f"{folder / 'pytorch_model.bin'}{problem}: "
                                "give a checkpoint saved with torch.save(model.state_dict(), path)")


# --- vocab.txt and tokenizer_config.json -------------------------------------------------------


def test_missing_vocab(tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_tokenizer(tmp_path)
    assert str(error.value) == f"no vocab.txt in {tmp_path}: put the vocab.txt that came with the checkpoint there"


@pytest.mark.parametrize("vocab, problem", [
    (b"[PAD]\n[UNK]\nthe\n", "lacks the special tokens ['[CLS]', '[SEP]', '[MASK]']: is it a BERT vocab.txt?"),
    (b"", "lacks the special tokens ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']"),
    (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncaf\xe9\n", "is not UTF-8 text: download the checkpoint's vocab.txt again"),
], ids=["no-cls-sep-mask", "empty", "latin-1"])
def test_vocab_without_special_tokens_or_not_utf8(tmp_path, vocab, problem):
    (tmp_path / "vocab.txt").write_bytes(vocab)
    with pytest.raises(CheckpointError) as error:
        load_tokenizer(tmp_path)
    assert str(error.value).startswith(str(tmp_path / "vocab.txt")) and problem in str(error.value)


@pytest.mark.parametrize("settings, problem", [
    ('{"do_lower_case": "yes"}', "found 'yes'"),
    ("[true]", "found [True]"),
    ("{do_lower_case: true}", "cannot read"),
], ids=["string", "list", "not-json"])
def test_tokenizer_config_that_does_not_say_true_or_false(tmp_path, tiny_checkpoint, settings, problem):
    (tmp_path / "vocab.txt").write_bytes((tiny_checkpoint / "vocab.txt").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(settings)
    with pytest.raises(CheckpointError, match="download it again, or delete it") as error:
        load_tokenizer(tmp_path)
    assert str(tmp_path / "tokenizer_config.json") in str(error.value) and problem in str(error.value)


# --- through the CLI: exit 2 and one line ------------------------------------------------------


def test_cli_folder_without_config_says_where_to_put_one(tmp_path):
    (tmp_path / "pytorch_model.bin").touch()
    assert_one_line_error(weights_cli(tmp_path), f"no config.json or bert_config.json in {tmp_path}: "
                                                 "put the config.json that came with these weights there")
    assert_one_line_error(weights_cli(tmp_path / "pytorch_model.bin"), f"in {tmp_path}: put the config.json")


def test_cli_config_with_zero_heads(tmp_path):
    folder = folder_with_config(tmp_path, {**TINY, "num_attention_heads": 0})
    assert_one_line_error(weights_cli(folder), str(folder / "config.json"), "num_attention_heads must be a whole "
                          "number of at least 1, got 0", "correct the file")


def test_cli_config_that_is_a_list(tmp_path):
    folder = folder_with_config(tmp_path, "[]")
    assert_one_line_error(weights_cli(folder), str(folder / "config.json"), "not a list")


def test_cli_safetensors_range_that_does_not_fit_the_shape(tmp_path, tiny_checkpoint):
    folder = folder_with_config(tmp_path, (tiny_checkpoint / "config.json").read_text())
    (folder / "pytorch_model.bin").unlink()
    write_safetensors(folder / "model.safetensors",
                      {"bert.pooler.dense.bias": {"dtype": "F32", "shape": [32], "data_offsets": [0, 24]}}, SIX_FLOATS)
    assert_one_line_error(weights_cli(folder), str(folder / "model.safetensors"), "needs 128 bytes",
                          "download it again")


@pytest.mark.parametrize("layers", [3, 1])
def test_cli_config_with_more_or_fewer_layers_than_the_weights(tmp_path, tiny_checkpoint, layers):
    """Loading on would train layers from random weights, or drop some, after a few warnings."""
    folder = folder_with_config(tmp_path, {**TINY, "num_hidden_layers": layers})
    (folder / "pytorch_model.bin").write_bytes((tiny_checkpoint / "pytorch_model.bin").read_bytes())
    assert_one_line_error(weights_cli(folder), f"{folder}: its config says num_hidden_layers {layers}, but its weights "
                                               f"hold 2 layers; use the config that came with these weights")


def test_cli_bin_holding_a_list(tmp_path, tiny_checkpoint):
    folder = folder_with_config(tmp_path, (tiny_checkpoint / "config.json").read_text())
    torch.save([torch.zeros(2)], folder / "pytorch_model.bin")
    assert_one_line_error(weights_cli(folder), f"{folder / 'pytorch_model.bin'} holds a value of type list",
                          "torch.save(model.state_dict(), path)")
