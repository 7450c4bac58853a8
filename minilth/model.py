"""BERT in plain PyTorch: the config, the encoder and the task heads.

Parameter names are exactly Hugging Face's (and, through them, Google's), so a Hugging Face state
dict loads as it is and a pruning mask is keyed by the same names everywhere:
`bert.encoder.layer.3.attention.self.query.weight`, `classifier.weight`, `cls.predictions.bias`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError


@dataclass
class BertConfig:
    """BERT's hyper-parameters, with Hugging Face's field names (Google's bert_config.json uses the same)."""

    vocab_size: int = 30522  # V, WordPiece vocabulary
    hidden_size: int = 768  # H
    num_hidden_layers: int = 12  # L
    num_attention_heads: int = 12  # nh; head size d = H / nh
    intermediate_size: int = 3072  # feed-forward width, 4H
    hidden_act: str = "gelu"  # "gelu" (erf, BERT's) or "gelu_new" (tanh approximation) or "relu"
    hidden_dropout_prob: float = 0.1  # dropout after embeddings, attention output and feed-forward
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # longest sequence
    type_vocab_size: int = 2  # segment A / B
    initializer_range: float = 0.02  # std of the normal initialisation
    layer_norm_eps: float = 1e-12  # BERT's (TF's) LayerNorm epsilon
    pad_token_id: int = 0  # [PAD]

    def __post_init__(self):
        # checked here, not where a value is first used: a config.json comes from anywhere, and a
        # string, a zero or a negative size would otherwise fail deep inside torch
        for name, value in vars(self).items():
            if name in SIZES and not (_is_whole(value) and value >= 1):
                raise CheckpointError(f"{name} must be a whole number of at least 1, got {value!r}")
            if name in PROBABILITIES and not (_is_real(value) and 0 <= value <= 1):
                raise CheckpointError(f"{name} must be a probability in [0, 1], got {value!r}")
            if name in POSITIVE_REALS and not (_is_real(value) and value > 0):
                raise CheckpointError(f"{name} must be a positive number, got {value!r}")
        if not (_is_whole(self.pad_token_id) and 0 <= self.pad_token_id < self.vocab_size):
            raise CheckpointError(f"pad_token_id must be a token id in [0, vocab_size {self.vocab_size}), "
                                  f"got {self.pad_token_id!r}")
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(f"hidden_size {self.hidden_size} is not a multiple of "
                                  f"num_attention_heads {self.num_attention_heads}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            raise CheckpointError(f"hidden_act {self.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}")

    @classmethod
    def from_dict(cls, values: dict) -> "BertConfig":
        """Returns the config from a Hugging Face config.json or Google bert_config.json dict; other keys are ignored."""
        if not isinstance(values, dict):
            raise CheckpointError(f"a BERT config is a JSON object of names and values, not a {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        """Returns the config stored in a config.json / bert_config.json file."""
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"cannot read the BERT config {path} ({error}): "
                                  "download the checkpoint's config again") from None
        try:
            return cls.from_dict(values)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}; correct the file or download the checkpoint's config "
                                  "again") from None

    def to_dict(self) -> dict:
        """Returns the config as a plain dict (what config.json holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def preset(cls, name: str) -> "BertConfig":
        """Returns the config of a known checkpoint: bert-base-uncased, bert-large-uncased or a small BERT.

        Small BERTs (Turc et al., 2019) are named like Google's: bert_uncased_L-4_H-256_A-4, for
        L in {2,4,6,8,10,12} and H in {128,256,512,768}, with H/64 heads and 4H feed-forward.
        """
        key = name.split("/")[-1].lower()
        if key in PRESETS:
            return cls(**PRESETS[key])
        small = _parse_small_bert(key)
        if small:
            layers, hidden = small
            return cls(hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
        raise CheckpointError(f"no preset config named '{name}'; known: {', '.join(preset_names())}")


SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "type_vocab_size")  # BertConfig fields that count something
PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")
POSITIVE_REALS = ("initializer_range", "layer_norm_eps")


def _is_whole(value) -> bool:
    """True for an int; False for a bool, a float (768.0 included) or a string."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    """True for an int or float that is not a bool (NaN too: the range checks reject it)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


PRESETS = {
    "bert-base-uncased": {},
    "bert-large-uncased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                               intermediate_size=4096),
}
SMALL_BERT_LAYERS = (2, 4, 6, 8, 10, 12)
SMALL_BERT_HIDDEN = (128, 256, 512, 768)


def _parse_small_bert(key: str) -> tuple[int, int] | None:
    """(L, H) of a small-BERT name such as 'bert_uncased_L-4_H-256_A-4', or None."""
    for layers in SMALL_BERT_LAYERS:
        for hidden in SMALL_BERT_HIDDEN:
            if key == f"bert_uncased_l-{layers}_h-{hidden}_a-{hidden // 64}":
                return layers, hidden
    return None


def preset_names() -> list[str]:
    """Returns every name BertConfig.preset knows."""
    small = [f"bert_uncased_L-{l}_H-{h}_A-{h // 64}" for l in SMALL_BERT_LAYERS for h in SMALL_BERT_HIDDEN]
    return list(PRESETS) + small


ACTIVATIONS = {
    "gelu": F.gelu,  # exact, erf-based: what BERT was trained with
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


@dataclass
class ModelOutput:
    """What a model returns: the loss when targets were given, and the logits of its head."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # classification (B, num_labels), MLM (B, T, V)
    start_logits: torch.Tensor | None = None  # question answering (B, T)
    end_logits: torch.Tensor | None = None  # question answering (B, T)
    seq_relationship_logits: torch.Tensor | None = None  # next-sentence prediction (B, 2)


class BertEmbeddings(nn.Module):
    """Word + segment + position embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)  # HF/TF name, kept for checkpoints
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence of {T} tokens is longer than max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}: truncate it")
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        x = x + self.position_embeddings(positions)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention; Q, K and V keep separate matrices, as the checkpoints do.

    (Three matrix multiplies measured faster than one over the concatenated weights when training.)
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        H = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, H = x.shape
        heads = lambda t: t.view(B, T, self.num_heads, H // self.num_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))  # each (B, nh, T, d)
        dropout = self.dropout_p if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)  # (B, nh, T, d)
        return context.transpose(1, 2).reshape(B, T, H)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual and LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)  # `self.self`: the checkpoint's name (attention.self.query)
        self.output = BertSelfOutput(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, attn_mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, 4H)


class BertOutput(BertSelfOutput):
    """Feed-forward down-projection, dropout, residual and LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, attn_mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, attn_mask)
        return x


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence vector the classification head reads."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(sequence[:, 0]))  # (B, H)


class BertPreTrainedModel(nn.Module):
    """Shared by every model: BERT's initialisation (normal, std 0.02; zero bias; LayerNorm 1/0)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg

    def init_weights(self) -> None:
        """Initialises every parameter as BERT does (normal weights, zero biases, unit LayerNorm gains).

        A tied MLM decoder needs nothing more: it is the word-embedding tensor itself, not a copy.
        """
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, BertLMPredictionHead):
                nn.init.zeros_(module.bias)


class BertModel(BertPreTrainedModel):
    """The encoder: embeddings, L transformer layers and (optionally) the pooler."""

    def __init__(self, cfg: BertConfig, add_pooling_layer: bool = True):
        super().__init__(cfg)
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None):
        """Returns (sequence_output (B, T, H), pooled_output (B, H) or None without a pooler)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        x = self.encoder(x, _attention_mask(attention_mask))
        return x, (self.pooler(x) if self.pooler is not None else None)


def _attention_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Boolean mask (B, 1, 1, T), True where a token may be attended; padding is never attended.

    None when nothing is padded, which lets scaled_dot_product_attention take its fastest kernels.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :].to(torch.bool)  # (B, 1, 1, T)


class BertForSequenceClassification(BertPreTrainedModel):
    """Pooled [CLS] -> dropout -> linear. num_labels = 1 is regression (STS-B) with a mean squared error."""

    def __init__(self, cfg: BertConfig, num_labels: int = 2):
        super().__init__(cfg)
        self.num_labels = num_labels
        self.bert = BertModel(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> ModelOutput:
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return ModelOutput(loss=loss, logits=logits)


class BertForQuestionAnswering(BertPreTrainedModel):
    """A linear layer scores every token as the answer's start and end (SQuAD)."""

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                start_positions=None, end_positions=None) -> ModelOutput:
        sequence, _ = self.bert(input_ids, attention_mask, token_type_ids)
        start_logits, end_logits = self.qa_outputs(sequence).unbind(-1)  # each (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the window are ignored, as in BERT's run_squad
            T = start_logits.shape[1]
            start_loss = F.cross_entropy(start_logits, start_positions.clamp(0, T), ignore_index=T)
            end_loss = F.cross_entropy(end_logits, end_positions.clamp(0, T), ignore_index=T)
            loss = (start_loss + end_loss) / 2
        return ModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """Transform, then a decoder whose weight IS the word-embedding matrix (tied), plus a bias per token."""

    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(cfg)
        self.word_embeddings = [word_embeddings]  # a list keeps it out of this module's parameters
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(x), self.word_embeddings[0].weight, self.bias)  # (B, T, V)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg, word_embeddings)


class BertForMaskedLM(BertPreTrainedModel):
    """Masked-language modelling: predict the original token at every masked position (labels -100 elsewhere).

    Like Hugging Face's, it has no pooler: the MLM objective never reads it.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(cfg, self.bert.embeddings.word_embeddings)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> ModelOutput:
        sequence, _ = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.cls.predictions(sequence)  # (B, T, V)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return ModelOutput(loss=loss, logits=logits)


class BertPreTrainingHeads(BertOnlyMLMHead):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__(cfg, word_embeddings)
        self.seq_relationship = nn.Linear(cfg.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
    """BERT's pre-training heads: masked-language modelling and next-sentence prediction."""

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg)
        self.cls = BertPreTrainingHeads(cfg, self.bert.embeddings.word_embeddings)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                labels=None, next_sentence_label=None) -> ModelOutput:
        sequence, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.cls.predictions(sequence)  # (B, T, V)
        nsp_logits = self.cls.seq_relationship(pooled)  # (B, 2)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = (F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
                    + F.cross_entropy(nsp_logits, next_sentence_label))
        return ModelOutput(loss=loss, logits=logits, seq_relationship_logits=nsp_logits)


HEADS = {
    "base": BertModel,
    "classification": BertForSequenceClassification,
    "regression": BertForSequenceClassification,
    "span": BertForQuestionAnswering,
    "mlm": BertForMaskedLM,
    "pretraining": BertForPreTraining,
}


def build_model(cfg: BertConfig, head: str = "base", num_labels: int = 2) -> BertPreTrainedModel:
    """Returns a freshly initialised model with the given head (see HEADS)."""
    if head not in HEADS:
        raise ValueError(f"unknown head '{head}'; use one of {', '.join(HEADS)}")
    if head == "regression":
        return BertForSequenceClassification(cfg, num_labels=1)
    if head == "classification":
        return BertForSequenceClassification(cfg, num_labels=num_labels)
    return HEADS[head](cfg)


def count_parameters(model: nn.Module) -> int:
    """Returns the number of parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())
