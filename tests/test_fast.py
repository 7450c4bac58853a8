"""The fast executions run model.py's own modules: on the padded batch and on the real tokens only, they give the
outputs and gradients of the textbook execution within 1e-5, and transformers' too."""
import pytest
import torch
import transformers

from minilth.checkpoints.pretrained import load_into
from minilth.fast.tokens import PackedTokens, PaddedTokens, length_buckets, token_layout
from minilth.lottery.baselines import random_prune
from minilth import model as model_module
from minilth.model import BertConfig, ModelOutput, build_model
from minilth.prune import Mask, prunable_names
from minilth.structured import gradient_importance

TOL = 1e-5
CONFIG = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
              max_position_embeddings=32)

# model.py's own lists: an execution or a head kind added there is compared here with no change to this file
EXECUTIONS, HEAD_KINDS = model_module.EXECUTIONS, list(model_module.HEADS)
FAST_EXECUTIONS = [execution for execution in EXECUTIONS if execution != "textbook"]  # each against the textbook's


def make_batch(lengths: list[int], T: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded random ids, segment B in the second half; two rows with holes (column 0, [CLS], stays real)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    positions = torch.arange(T)
    attention_mask = (positions[None] < lengths[:, None]).long()  # (B, T)
    attention_mask[-2, 1:4] = 0  # a gap after the first token
    attention_mask[-1, 3] = 0  # a hole
    input_ids = torch.randint(5, CONFIG["vocab_size"], (len(lengths), T), generator=generator) * attention_mask
    token_type_ids = (positions[None] >= lengths[:, None] // 2).long() * attention_mask
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


# lengths spread widely, so attention runs in several length buckets, one of them padded inside
LENGTHS = [16, 3, 9, 12, 15, 1, 7, 16, 10, 13]


# every execution is compared with the reference one: model.py's textbook forward
REFERENCES = ["textbook", "padded"]


def both_paths(head: str, mask_sparsity: float = 0.0, reference: str = "textbook", **kwargs):
    """Returns (the model under `reference` execution, the same weights "unpadded"), eval mode (dropout off)."""
    torch.manual_seed(0)
    padded = build_model(BertConfig(**CONFIG, execution=reference), head=head, **kwargs).eval()
    if mask_sparsity:
        random_prune(padded, Mask.dense(padded, prunable_names(padded)), mask_sparsity, seed=0).apply_to(padded)
    unpadded = build_model(BertConfig(**CONFIG, execution="unpadded"), head=head, **kwargs).eval()
    unpadded.load_state_dict(padded.state_dict())
    return padded, unpadded


def gradients(model) -> dict[str, torch.Tensor]:
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(padded, unpadded):
    expected, got = gradients(padded), gradients(unpadded)
    assert set(got) == set(expected) and len(got) > 10
    for name in expected:
        assert (got[name] - expected[name]).abs().max() < TOL, name


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("mask_sparsity", [0.0, 0.5], ids=["dense", "pruned 50%"])
def test_classification_outputs_and_gradients_match(mask_sparsity, reference):
    padded, unpadded = both_paths("classification", mask_sparsity, reference, num_labels=3)
    batch = make_batch(LENGTHS)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    out_padded, out_unpadded = padded(**batch, labels=labels), unpadded(**batch, labels=labels)
    assert (out_unpadded.logits - out_padded.logits).abs().max() < TOL
    out_padded.loss.backward()
    out_unpadded.loss.backward()
    assert_same_gradients(padded, unpadded)
    if mask_sparsity:  # a pruning mask, keyed by the same names, holds through the unpadded path
        weight = dict(unpadded.named_parameters())["bert.encoder.layer.1.attention.self.query.weight"]
        assert (weight == 0).float().mean() > 0.3


@pytest.mark.parametrize("reference", REFERENCES)
def test_per_token_outputs_and_gradients_match_at_real_tokens(reference):
    padded, unpadded = both_paths("mlm", reference=reference)
    batch = make_batch(LENGTHS, seed=1)
    real = batch["attention_mask"].bool()
    labels = torch.where(real, batch["input_ids"], -100)
    sequence_padded, _ = padded.bert(**batch)
    sequence_unpadded, _ = unpadded.bert(**batch)
    assert (sequence_unpadded - sequence_padded)[real].abs().max() < TOL
    assert sequence_unpadded[~real].abs().max() == 0  # padding is not computed
    out_padded, out_unpadded = padded(**batch, labels=labels), unpadded(**batch, labels=labels)
    assert abs(out_unpadded.loss - out_padded.loss) < TOL
    out_padded.loss.backward()
    out_unpadded.loss.backward()
    assert_same_gradients(padded, unpadded)


@pytest.mark.parametrize("reference", REFERENCES)
def test_question_answering_matches_at_real_tokens(reference):
    padded, unpadded = both_paths("span", reference=reference)
    batch = make_batch(LENGTHS, seed=2)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        got, expected = unpadded(**batch), padded(**batch)
    assert (got.start_logits - expected.start_logits)[real].abs().max() < TOL
    assert (got.end_logits - expected.end_logits)[real].abs().max() < TOL


def test_training_mode_runs_through_the_packed_path():
    """With dropout on, the two paths draw different masks; the packed one still trains (finite, non-zero grads)."""
    _, unpadded = both_paths("classification")
    unpadded.train()
    batch = make_batch(LENGTHS, seed=3)
    unpadded(**batch, labels=torch.zeros(len(LENGTHS), dtype=torch.long)).loss.backward()
    grads = gradients(unpadded)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["bert.encoder.layer.0.attention.self.key.weight"].abs().sum() > 0


TEXTBOOK_MODULES = ("BertEmbeddings", "BertSelfAttention", "BertSelfOutput", "BertAttention", "BertIntermediate",
                    "BertOutput", "BertLayer", "BertEncoder", "BertPooler", "Dropout")


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("head", ["classification", "mlm"])
def test_every_module_of_model_py_runs_its_own_forward_under_every_execution(execution, head):
    """A print, a breakpoint or a hook in any module of model.py runs whatever the execution: speed is a branch inside
    those forwards, not a second copy of the layer. Each module class fires once per instance it has (dropout
    modules only in training; the fused attention kernel drops attention probabilities inside, without the
    attention's Dropout module)."""
    torch.manual_seed(0)
    model = build_model(BertConfig(**CONFIG, execution=execution), head=head).train()
    fired = {name: 0 for name in TEXTBOOK_MODULES}
    for module in model.modules():
        name = type(module).__name__
        if name in fired:
            module.register_forward_hook(lambda module, args, output, name=name: fired.__setitem__(name,
                                                                                                   fired[name] + 1))
    model(**make_batch(LENGTHS))
    layers = CONFIG["num_hidden_layers"]
    expected = {"BertEmbeddings": 1, "BertSelfAttention": layers, "BertSelfOutput": layers, "BertAttention": layers,
                "BertIntermediate": layers, "BertOutput": layers, "BertLayer": layers, "BertEncoder": 1,
                "BertPooler": 1,
                "Dropout": 1 + (3 if execution == "textbook" else 2) * layers + (head == "classification")}
    assert fired == expected
    assert getattr(model_module, "BertSelfAttention").forward.__module__ == "minilth.model"


def test_layout_is_packed_only_when_asked_and_something_is_padded():
    padded_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert isinstance(token_layout(padded_mask, "unpadded"), PackedTokens)
    assert isinstance(token_layout(torch.ones(2, 3), "unpadded"), PaddedTokens)
    assert isinstance(token_layout(None, "unpadded"), PaddedTokens)
    for execution, fused in (("padded", True), ("textbook", False)):
        layout = token_layout(padded_mask, execution)
        assert isinstance(layout, PaddedTokens) and layout.fused is fused


def test_packing_keeps_real_tokens_longest_sequence_first():
    tokens = PackedTokens(torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]]))
    grid = torch.arange(16).view(4, 4)
    assert tokens.select(grid).tolist() == [4, 5, 6, 7, 0, 1, 12, 14]  # row 1 (4 tokens), then rows 0, 3; row 2 empty
    restored = tokens.restore(tokens.select(grid)[:, None].float())  # (B, T, 1)
    assert restored.squeeze(-1).tolist() == [[0, 1, 0, 0], [4, 5, 6, 7], [0, 0, 0, 0], [12, 0, 14, 0]]


def test_length_buckets_cover_every_sequence_once():
    lengths = [128, 120, 97, 96, 80, 40, 40, 3, 0]
    buckets = length_buckets(lengths, torch.device("cpu"), min_fill=0.75)
    assert [(b.num_sequences, b.length) for b in buckets] == [(4, 128), (1, 80), (2, 40), (1, 3)]
    assert buckets[0].start == 0 and buckets[-1].stop == sum(lengths)
    assert all(a.stop == b.start for a, b in zip(buckets, buckets[1:]))
    assert buckets[2].slots is None and buckets[2].key_mask is None  # equal lengths: no padding at all
    assert buckets[0].key_mask[:, 0, 0].sum(1).tolist() == [128, 120, 97, 96]
    assert len(buckets[0].slots) == 128 + 120 + 97 + 96


@pytest.mark.parametrize("execution", FAST_EXECUTIONS)
def test_first_token_only_gives_the_same_pooled_output(execution):
    """The classifier's shortcut: the last layer computes [CLS] only, and the pooler reads the same vector."""
    torch.manual_seed(0)
    model = build_model(BertConfig(**CONFIG, execution=execution), head="base").eval()
    batch = make_batch(LENGTHS, seed=4)
    with torch.no_grad():
        sequence, pooled = model(**batch)
        first, pooled_first = model(**batch, first_token_only=True)
    assert first.shape == (len(LENGTHS), 1, CONFIG["hidden_size"])
    assert (first[:, 0] - sequence[:, 0]).abs().max() < TOL
    assert (pooled_first - pooled).abs().max() < TOL


def test_classification_gradients_match_transformers():
    """minilth's default path (unpadded, [CLS]-only last layer) against Hugging Face: loss and every gradient."""
    torch.manual_seed(0)
    reference = transformers.BertForSequenceClassification(transformers.BertConfig(
        **CONFIG, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    ours = build_model(BertConfig(**CONFIG), head="classification", num_labels=3)
    assert load_into(ours, reference.state_dict()).missing == []
    batch = make_batch(LENGTHS, seed=5)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    reference.eval(), ours.eval()  # dropout off on both sides; gradients still flow
    expected, got = reference(**batch, labels=labels), ours(**batch, labels=labels)
    assert abs(got.loss - expected.loss) < TOL
    expected.loss.backward()
    got.loss.backward()
    theirs = gradients(reference)
    for name, grad in gradients(ours).items():
        assert (grad - theirs[name]).abs().max() < TOL, name


def outputs_at_real_tokens(output, real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every output of a model, the per-token ones (B, T, ...) at the real tokens only: the unpadded execution does
    not compute padding."""
    if isinstance(output, tuple):  # the base model: (sequence, pooled)
        named = {"sequence": output[0], "pooled": output[1]}
    else:
        named = {name: value for name, value in vars(output).items() if value is not None}
    return {name: value[real] if value.shape[:2] == real.shape else value for name, value in named.items()}


def every_execution(model, batch: dict) -> dict[str, dict[str, torch.Tensor]]:
    """execution -> the model's outputs (eval mode, at the real tokens) under it, the same weights every time."""
    model.eval()
    real = batch["attention_mask"].bool()
    assert not real.all(), "the batch must contain padding"
    got = {}
    with torch.no_grad():
        for execution in EXECUTIONS:
            model.config.execution = execution
            got[execution] = outputs_at_real_tokens(model(**batch), real)
    return got


def assert_close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> None:
    assert got and set(got) == set(expected), (what, set(got), set(expected))
    for name in expected:
        assert got[name].shape == expected[name].shape, (what, name)
        assert (got[name] - expected[name]).abs().max() < TOL, (what, name)


@pytest.mark.parametrize("head", HEAD_KINDS)
def test_every_execution_gives_the_same_real_token_outputs_for_every_head(head):
    """A tiny random BERT with each head: "padded" and "unpadded" give the textbook forward's outputs within 1e-5."""
    torch.manual_seed(0)
    model = build_model(BertConfig(**CONFIG), head=head, num_labels=3)
    outputs = every_execution(model, make_batch(LENGTHS, seed=8))
    for execution in FAST_EXECUTIONS:
        assert_close(outputs[execution], outputs["textbook"], f"{head}, {execution}")


@pytest.fixture(scope="module")
def minilm_batch(glue_dir, minilm_tokenizer) -> dict[str, torch.Tensor]:
    """Real RTE pairs tokenized for MiniLM, right-padded to the longest, and one row with a hole, as make_batch's."""
    from conftest import read_tsv_column_pairs
    pairs = read_tsv_column_pairs(glue_dir / "RTE" / "dev.tsv", "sentence1", "sentence2")[:6]
    encoded = minilm_tokenizer.encode([a for a, _ in pairs], [b for _, b in pairs], max_length=128)
    longest = max(map(len, encoded["input_ids"]))
    batch = {name: torch.tensor([row + [0] * (longest - len(row)) for row in rows]) for name, rows in encoded.items()}
    batch["attention_mask"][-1, 3] = 0
    return batch


@pytest.mark.parametrize("head", HEAD_KINDS)
def test_real_minilm_gives_the_same_outputs_every_way_for_every_head(head, minilm_path, minilm_batch):
    """The real pre-trained MiniLM, a padded batch of real text: every execution gives the textbook outputs."""
    from minilth.checkpoints import from_pretrained
    torch.manual_seed(0)
    outputs = every_execution(from_pretrained(minilm_path, head=head, num_labels=3), minilm_batch)
    for execution in FAST_EXECUTIONS:
        assert_close(outputs[execution], outputs["textbook"], f"MiniLM {head}, {execution}")


@pytest.mark.parametrize("head, num_labels", [("base", 2), ("classification", 3), ("regression", 1)])
def test_real_minilm_matches_transformers_under_every_execution(head, num_labels, minilm_path, minilm_batch):
    """Hugging Face's BertModel and BertForSequenceClassification on the same weights (the new classifier copied
    from theirs), their padded batch; each of minilth's executions within 1e-5 at the real tokens."""
    from minilth.checkpoints import from_pretrained
    torch.manual_seed(0)
    if head == "base":
        reference = transformers.BertModel.from_pretrained(minilm_path).eval()
    else:
        reference = transformers.BertForSequenceClassification.from_pretrained(minilm_path, num_labels=num_labels)
    ours = from_pretrained(minilm_path, head=head, num_labels=num_labels)
    report = load_into(ours, reference.state_dict())
    assert report.missing == [] and report.unexpected == []
    reference.eval()
    real = minilm_batch["attention_mask"].bool()
    with torch.no_grad():
        theirs = reference(**minilm_batch)
    expected = outputs_at_real_tokens((theirs.last_hidden_state, theirs.pooler_output) if head == "base"
                                      else ModelOutput(logits=theirs.logits), real)
    for execution, got in every_execution(ours, minilm_batch).items():
        assert_close(got, expected, f"MiniLM {head}, {execution}, against transformers")


def test_gradient_importance_is_the_same_under_every_execution():
    """Michel et al.'s gates sit on the inputs of the projections that every execution calls."""
    scores = {}
    for execution in EXECUTIONS:
        torch.manual_seed(0)
        model = build_model(BertConfig(**CONFIG, execution=execution), head="classification", num_labels=3)
        batch = {**make_batch(LENGTHS, seed=7), "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])}
        scores[execution] = gradient_importance(model, [batch])
    for kind in ("heads", "neurons"):
        assert scores["textbook"][kind].abs().sum() > 0
        for execution in FAST_EXECUTIONS:
            assert (scores[execution][kind] - scores["textbook"][kind]).abs().max() < 1e-4, (kind, execution)


def test_gradient_importance_of_the_real_minilm_is_the_same_under_every_execution(minilm_path, minilm_batch):
    """The same on the real MiniLM and real text: the hooks see every real token under every execution."""
    from minilth.checkpoints import from_pretrained
    torch.manual_seed(0)
    model = from_pretrained(minilm_path, head="classification", num_labels=2)
    batch = {**minilm_batch, "labels": torch.tensor([0, 1, 1, 0, 1, 0])}
    scores = {}
    for execution in EXECUTIONS:
        model.config.execution = execution
        scores[execution] = gradient_importance(model, [batch])
    for kind in ("heads", "neurons"):
        assert scores["textbook"][kind].shape == (6, 12 if kind == "heads" else 1536)
        assert scores["textbook"][kind].abs().sum() > 0
        for execution in FAST_EXECUTIONS:
            assert (scores[execution][kind] - scores["textbook"][kind]).abs().max() < 1e-4, (kind, execution)
