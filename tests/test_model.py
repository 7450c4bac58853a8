"""The foundation: minilth's BERT gives Hugging Face's numbers on real and random weights."""
import json
import subprocess
import sys

import pytest
import torch
import transformers

from conftest import read_tsv_column_pairs
from minilth.errors import CheckpointError
from minilth.checkpoints.configs import preset_config, preset_names, read_config
from minilth.model import BertConfig, build_model
from minilth.checkpoints.pretrained import from_pretrained, load_tokenizer, read_safetensors

TOL = 1e-5


def padded(batch: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
    longest = max(map(len, batch["input_ids"]))
    return {k: torch.tensor([row + [0] * (longest - len(row)) for row in rows]) for k, rows in batch.items()}


@pytest.fixture(scope="module")
def real_batch(glue_dir, minilm_tokenizer):
    pairs = read_tsv_column_pairs(glue_dir / "RTE" / "dev.tsv", "sentence1", "sentence2")[:6]
    batch = padded(minilm_tokenizer.encode([a for a, _ in pairs], [b for _, b in pairs], max_length=128))
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    return batch


def test_real_minilm_matches_transformers(minilm_path, real_batch):
    ours = from_pretrained(minilm_path)
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    reference = transformers.BertModel.from_pretrained(minilm_path).eval()
    with torch.no_grad():
        sequence, pooled = ours(**real_batch)
        expected = reference(**real_batch)
    keep = real_batch["attention_mask"].bool()
    assert (sequence - expected.last_hidden_state)[keep].abs().max() < TOL
    assert (pooled - expected.pooler_output).abs().max() < TOL


def tiny_hf_config(**overrides) -> transformers.BertConfig:
    values = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64)
    return transformers.BertConfig(**{**values, **overrides})


REFERENCE_HEADS = [
    # (transformers class, minilth head, extra config, outputs to compare: (ours, theirs))
    (transformers.BertForPreTraining, "pretraining", {},
     [("logits", "prediction_logits"), ("seq_relationship_logits", "seq_relationship_logits")]),
    (transformers.BertForMaskedLM, "mlm", {"hidden_act": "gelu_new"}, [("logits", "logits")]),
    (transformers.BertForSequenceClassification, "classification", {"num_labels": 3}, [("logits", "logits")]),
    (transformers.BertForSequenceClassification, "regression", {"num_labels": 1}, [("logits", "logits")]),
    (transformers.BertForQuestionAnswering, "span", {},
     [("start_logits", "start_logits"), ("end_logits", "end_logits")]),
]


def save_reference(model, folder, file_format: str) -> None:
    """Writes a transformers model as a checkpoint folder, in safetensors or the legacy .bin format."""
    if file_format == "safetensors":
        model.save_pretrained(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(folder / "config.json")
    state = dict(model.state_dict())
    # what older transformers releases wrote: the position_ids buffer, and TF-era LayerNorm names
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    for name in [n for n in state if "LayerNorm.weight" in n][:3]:
        state[name.replace("LayerNorm.weight", "LayerNorm.gamma")] = state.pop(name)
    torch.save(state, folder / "pytorch_model.bin")


def at_real_tokens(output: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A per-token output (B, T, ...) at the real tokens only; other outputs as they are."""
    return output[attention_mask.bool()] if output.shape[:2] == attention_mask.shape else output


@pytest.mark.parametrize("execution", ["textbook", "padded", "unpadded"])
@pytest.mark.parametrize("file_format", ["safetensors", "bin"])
@pytest.mark.parametrize("reference_cls, head, extra, outputs", REFERENCE_HEADS)
def test_random_tiny_models_match_transformers(tmp_path, file_format, reference_cls, head, extra, outputs, execution):
    torch.manual_seed(0)
    reference = reference_cls(tiny_hf_config(**extra)).eval()
    save_reference(reference, tmp_path / "ckpt", file_format)
    num_labels = extra.get("num_labels", 2)
    ours = from_pretrained(tmp_path / "ckpt", head=head, num_labels=num_labels)
    # Hugging Face's QA and MLM models have no pooler; minilth's keep an unused one (UNUSED_POOLER)
    assert ours.load_report.missing == list(ours.unused_tensors) and ours.load_report.unexpected == []
    ours.config.execution = execution

    input_ids = torch.randint(5, 99, (3, 11))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    with torch.no_grad():
        got, expected = ours(**inputs), reference(**inputs)
    for ours_name, their_name in outputs:
        got_output, expected_output = getattr(got, ours_name), getattr(expected, their_name)
        if execution == "unpadded":  # padding positions are not computed: per-token outputs agree at the real tokens
            got_output, expected_output = (at_real_tokens(o, attention_mask) for o in (got_output, expected_output))
        assert (got_output - expected_output).abs().max() < TOL, ours_name


def test_losses_match_transformers(tmp_path):
    torch.manual_seed(0)
    reference = transformers.BertForQuestionAnswering(tiny_hf_config()).eval()
    reference.save_pretrained(tmp_path)
    ours = from_pretrained(tmp_path, head="span")
    inputs = dict(input_ids=torch.randint(5, 99, (4, 9)), start_positions=torch.tensor([0, 3, 8, 20]),
                  end_positions=torch.tensor([1, 4, 8, 25]))  # 20 and 25 fall outside the window
    with torch.no_grad():
        assert abs(ours(**inputs).loss - reference(**inputs).loss) < TOL


def test_mlm_decoder_is_tied_to_word_embeddings():
    model = build_model(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=20), head="mlm")
    new_row = torch.randn(16)
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[7] = new_row
    hidden = torch.randn(1, 1, 16)
    logits = model.cls.predictions(hidden).squeeze()
    transformed = model.cls.predictions.transform(hidden).squeeze()
    assert torch.allclose(logits[7], transformed @ new_row + model.cls.predictions.bias[7], atol=1e-6)
    assert "cls.predictions.decoder.weight" not in model.state_dict()  # one matrix, stored once


def test_new_heads_are_initialised_as_bert():
    torch.manual_seed(0)
    model = build_model(BertConfig(hidden_size=768, num_hidden_layers=1), head="classification", num_labels=2)
    assert model.classifier.bias.abs().max() == 0
    assert abs(model.bert.encoder.layer[0].intermediate.dense.weight.std() - 0.02) < 1e-3


def test_configs_from_google_and_presets(tmp_path):
    google = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "hidden_size": 256, "initializer_range": 0.02, "intermediate_size": 1024,
              "max_position_embeddings": 512, "num_attention_heads": 4, "num_hidden_layers": 4,
              "type_vocab_size": 2, "vocab_size": 30522}
    (tmp_path / "bert_config.json").write_text(json.dumps(google))
    assert read_config(tmp_path / "bert_config.json") == preset_config("bert_uncased_L-4_H-256_A-4")
    assert len([n for n in preset_names() if n.startswith("bert_uncased_")]) == 24
    base, large = preset_config("bert-base-uncased"), preset_config("bert-large-uncased")
    assert (base.num_hidden_layers, base.hidden_size, large.num_hidden_layers, large.hidden_size) == (12, 768, 24, 1024)
    with pytest.raises(CheckpointError, match="no preset"):
        preset_config("bert-huge")


@pytest.mark.parametrize("files", ["samples", "complete"])
def test_tokenizer_matches_transformers_on_real_glue(files, request, minilm_path):
    glue_dir = request.getfixturevalue("glue_dir" if files == "samples" else "full_glue_dir")
    ours = load_tokenizer(minilm_path)
    reference = transformers.BertTokenizer.from_pretrained(minilm_path)
    pairs = read_tsv_column_pairs(glue_dir / "RTE" / "dev.tsv", "sentence1", "sentence2")
    singles = read_tsv_column_pairs(glue_dir / "SST-2" / "dev.tsv", "sentence")
    got_pairs = ours.encode([a for a, _ in pairs], [b for _, b in pairs], max_length=128)
    expected_pairs = reference([a for a, _ in pairs], [b for _, b in pairs], max_length=128, truncation=True)
    got_singles = ours.encode([a for a, _ in singles], max_length=128)
    expected_singles = reference([a for a, _ in singles], max_length=128, truncation=True)
    for got, expected in ((got_pairs, expected_pairs), (got_singles, expected_singles)):
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert got[key] == expected[key], key
    assert max(map(len, got_pairs["input_ids"])) == 128, "some RTE pairs must be truncated"


# --- bad input: each a clear one-line error ---------------------------------------------------


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no weights in"):
        from_pretrained(tmp_path)


def test_truncated_safetensors(tmp_path, minilm_path):
    data = (minilm_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "config.json").write_bytes((minilm_path / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match="truncated"):
        read_safetensors(tmp_path / "model.safetensors")


def test_config_that_does_not_match_weights(tmp_path, minilm_path):
    (tmp_path / "model.safetensors").symlink_to(minilm_path / "model.safetensors")
    config = json.loads((minilm_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 1024}))
    with pytest.raises(CheckpointError, match=r"shape mismatch for bert\.encoder\.layer\.0\.intermediate\.dense"
                                              r"\.bias: checkpoint \(1536,\), model \(1024,\)"):
        from_pretrained(tmp_path, head="classification")


def test_unknown_name_lists_known_ones():
    with pytest.raises(CheckpointError, match="known: bert-base-uncased"):
        from_pretrained("bert-gigantic")


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minilth.weights", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: no weights in {tmp_path}: expected one of "
                                                  "model.safetensors, pytorch_model.bin, bert_model.ckpt.index"]
