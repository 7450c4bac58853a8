"""BERT in plain PyTorch, as the paper prunes it: the config, the encoder and the task heads.

Read it top to bottom: the config, the embeddings, self-attention (its formula is in
BertSelfAttention.forward), one transformer layer, the encoder, the pooler, then the heads.

Parameter names are exactly Hugging Face's (and, through them, Google's), so a Hugging Face state
dict loads as it is and a pruning mask is keyed by the same names everywhere:
`bert.encoder.layer.3.attention.self.query.weight`, `classifier.weight`, `cls.predictions.bias`.

Every forward written here is the one that runs. Speed is a branch beside the textbook line, never
a second copy of a layer: where the tokens are (BertModel.forward: the padded batch, or by default
the real tokens only, packed by minilth/fast), how attention is computed (BertSelfAttention.forward:
the formula, or PyTorch's fused kernel), the [CLS]-only last layer of a classifier (BertLayer) and
dropout's cheaper mask (Dropout). `BertConfig.execution` chooses; the numbers of the real tokens do
not change (tests/test_fast.py).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import fast
from .errors import CheckpointError

EXECUTIONS = ("unpadded", "padded", "textbook")  # how BertModel.forward runs (see BertConfig.execution)


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
    # "textbook": every padded position, attention by its formula; "padded": the fused attention kernel
    # and the [CLS]-only last layer; "unpadded": those, on the real tokens only. Not a checkpoint's property.
    execution: str = "unpadded"
    # A model with heads or feed-forward neurons removed (structured/shrink.py): the heads removed from
    # each layer ({layer: [heads]}, transformers' name) and each layer's feed-forward width.
    pruned_heads: dict[int, list[int]] = field(default_factory=dict)
    intermediate_sizes: list[int] | None = None

    def __post_init__(self):
        _require(self.execution in EXECUTIONS, "execution", f"one of {', '.join(EXECUTIONS)}")
        _require(self.hidden_size % self.num_attention_heads == 0, "hidden_size",
                 f"a multiple of num_attention_heads {self.num_attention_heads}")
        # a config.json's other values are checked where it is read (checkpoints/configs.py)

    def num_heads(self, layer: int) -> int:
        """Returns the number of attention heads layer `layer` has (fewer after heads were removed)."""
        return self.num_attention_heads - len(self.pruned_heads.get(layer, ()))

    def feedforward_size(self, layer: int) -> int:
        """Returns layer `layer`'s feed-forward width (narrower after neurons were removed)."""
        return self.intermediate_size if self.intermediate_sizes is None else self.intermediate_sizes[layer]

    def to_dict(self) -> dict:
        """Returns the architecture as a plain dict, what a checkpoint's config.json holds (not `execution`)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "execution"}


def _require(condition: bool, name: str, what: str) -> None:
    if not condition:
        raise CheckpointError(f"{name} must be {what}")


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


class Dropout(nn.Dropout):
    """nn.Dropout: in training, zero each element with probability p and scale the others by 1/(1-p)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and 0 < self.p < 1 and x.device.type == "cpu":  # the same masks from 16 random bits each:
            return x * fast.dropout_multiplier(x.shape, self.p, x.dtype, x.device)  # 6x cheaper (fast/dropout.py)
        return super().forward(x)


class BertEmbeddings(nn.Module):
    """Word + segment + position embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)  # HF/TF name, kept for checkpoints
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, tokens: fast.Tokens) -> torch.Tensor:
        """Returns the tokens' vectors (B, T, H), or (N, H) for the N real tokens when `tokens` packs them."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)  # (B, T)
        input_ids, token_type_ids, positions = map(tokens.select, (input_ids, token_type_ids, positions))
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, H) or (N, H)
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention; Q, K and V keep separate matrices, as the checkpoints do."""

    def __init__(self, cfg: BertConfig, num_heads: int):
        super().__init__()
        H = cfg.hidden_size
        self.num_heads, self.head_size = num_heads, H // cfg.num_attention_heads  # nh (this layer's), d
        self.query = nn.Linear(H, num_heads * self.head_size)
        self.key = nn.Linear(H, num_heads * self.head_size)
        self.value = nn.Linear(H, num_heads * self.head_size)
        self.dropout = Dropout(cfg.attention_probs_dropout_prob)

    def forward(self, x: torch.Tensor, tokens: fast.Tokens, first_token_only: bool = False) -> torch.Tensor:
        """Returns softmax(Q K^T / sqrt(d) + mask) V of every head, side by side: (B, T, nh d), or (N, nh d).

        Each token's query is scored against the keys of its own sequence's real tokens; with
        `first_token_only`, only each sequence's [CLS] asks (B, 1, nh d), or (B', nh d) packed.
        """
        heads = lambda t: t.unflatten(-1, (self.num_heads, self.head_size))  # noqa: E731  (..., nh, d)
        q = heads(self.query(tokens.first(x) if first_token_only else x))
        k, v = heads(self.key(x)), heads(self.value(x))
        if tokens.fused:  # the same numbers from PyTorch's fused kernel, on padded or packed tokens (fast/tokens.py)
            return tokens.attend(q, k, v, self.dropout.p if self.training else 0.0, first_token_only).flatten(-2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, d)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, T)
        if tokens.attention_mask is not None:  # padding keys get (almost) no weight: the most negative number
            padding = 1.0 - tokens.attention_mask[:, None, None, :].to(x.dtype)  # (B, 1, 1, T)
            scores = scores + padding * torch.finfo(x.dtype).min
        probs = self.dropout(scores.softmax(dim=-1))  # (B, nh, T, T)
        return (probs @ v).transpose(1, 2).flatten(-2)  # (B, T, nh d)


class BertSelfOutput(nn.Module):
    """Attention output projection (from the heads' nh x d values to H), dropout, residual and LayerNorm."""

    def __init__(self, cfg: BertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig, num_heads: int):
        super().__init__()
        self.self = BertSelfAttention(cfg, num_heads)  # `self.self`: the checkpoint's name (attention.self.query)
        self.output = BertSelfOutput(cfg, num_heads * self.self.head_size)

    def forward(self, x: torch.Tensor, tokens: fast.Tokens, first_token_only: bool = False) -> torch.Tensor:
        residual = tokens.first(x) if first_token_only else x  # sliced before the queries: a fixed gradient order
        return self.output(self.self(x, tokens, first_token_only), residual)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig, width: int):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, width)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, I); I = 4H unless neurons were removed


class BertOutput(BertSelfOutput):
    """Feed-forward down-projection (from the layer's I neurons to H), dropout, residual and LayerNorm."""


class BertLayer(nn.Module):
    """One transformer layer: attention, then the feed-forward, each with a residual and LayerNorm. Its number of
    heads and feed-forward width come from the config (a structured ticket may leave each layer with its own)."""

    def __init__(self, cfg: BertConfig, index: int):
        super().__init__()
        with warnings.catch_warnings():  # a layer left without heads (or neurons) has empty matrices: nothing to init
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.attention = BertAttention(cfg, cfg.num_heads(index))
            self.intermediate = BertIntermediate(cfg, cfg.feedforward_size(index))
            self.output = BertOutput(cfg, cfg.feedforward_size(index))

    def forward(self, x: torch.Tensor, tokens: fast.Tokens, first_token_only: bool = False) -> torch.Tensor:
        """Returns the layer's output for every token, or with `first_token_only` for each [CLS]: 5/6 less work."""
        x = self.attention(x, tokens, first_token_only)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg, index) for index in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, tokens: fast.Tokens, first_token_only: bool = False) -> torch.Tensor:
        """Returns the last layer's output; with `first_token_only` (a classifier reads [CLS] alone), of [CLS] only."""
        for index, layer in enumerate(self.layer):
            x = layer(x, tokens, first_token_only and index == len(self.layer) - 1)
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

    unused_tensors: tuple[str, ...] = ()  # parameters the head never reads (no gradient reaches them)

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
                token_type_ids: torch.Tensor | None = None, first_token_only: bool = False):
        """Returns (sequence_output (B, T, H), pooled_output (B, H) or None without a pooler).

        attention_mask (B, T) is 1 at real tokens, 0 at padding. `first_token_only` says the caller
        reads [CLS] alone: outside the textbook execution, sequence_output is then (B, 1, H).
        """
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens is longer than max_position_embeddings "
                             f"{self.config.max_position_embeddings}: truncate it")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # Where the tokens are: the padded batch (B, T), or (the default) its N real tokens packed into
        # rows (N,), so that everything but attention costs in proportion to real tokens (fast/tokens.py).
        tokens = fast.token_layout(attention_mask, self.config.execution)
        first_token_only = first_token_only and tokens.fused
        x = self.embeddings(input_ids, token_type_ids, tokens)  # (B, T, H) or (N, H)
        x = self.encoder(x, tokens, first_token_only)
        x = tokens.restore_first(x) if first_token_only else tokens.restore(x)  # (B, 1, H) or (B, T, H)
        return x, (self.pooler(x) if self.pooler is not None else None)


class BertForSequenceClassification(BertPreTrainedModel):
    """Pooled [CLS] -> dropout -> linear. num_labels = 1 is regression (STS-B) with a mean squared error."""

    def __init__(self, cfg: BertConfig, num_labels: int = 2):
        super().__init__(cfg)
        self.num_labels = num_labels
        self.bert = BertModel(cfg)
        self.dropout = Dropout(cfg.hidden_dropout_prob)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> ModelOutput:
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids, first_token_only=True)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return ModelOutput(loss=loss, logits=logits)


# UNUSED_POOLER. Hugging Face's QA and MLM models have no pooler. The paper's code keeps BERT's
# pooler in them, unused, and prunes it with the encoder (VITA-Group/BERT-Tickets LT_squad.py:107,
# LT_pretrain.py:164), so every task's sparsity is over the same 73 matrices (85,524,480 weights
# in BERT-base). minilth does the same; `--keep-pooler` leaves the pooler out on every task.


class BertForQuestionAnswering(BertPreTrainedModel):
    """A linear layer scores every token as the answer's start and end (SQuAD)."""

    unused_tensors = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")  # see UNUSED_POOLER

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg)  # its pooler is unused, but prunable (UNUSED_POOLER above)
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

    Unlike Hugging Face's, it keeps BERT's pooler, which the MLM objective never reads (UNUSED_POOLER).
    """

    unused_tensors = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")  # see UNUSED_POOLER

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg)  # its pooler is unused, but prunable (UNUSED_POOLER above)
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
        raise CheckpointError(f"unknown head '{head}'; use one of {', '.join(HEADS)}")
    if head == "regression":
        return BertForSequenceClassification(cfg, num_labels=1)
    if head == "classification":
        return BertForSequenceClassification(cfg, num_labels=num_labels)
    return HEADS[head](cfg)


def count_parameters(model: nn.Module) -> int:
    """Returns the number of parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())
