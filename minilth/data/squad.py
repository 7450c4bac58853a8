"""SQuAD v1.1: the reader, overlapping windows over long contexts, span post-processing, EM and F1.

The data flow follows BERT's original run_squad.py (and Hugging Face's run_squad.py of the
transformers 2.x era that the paper's reference code builds on):

    question + context -> [CLS] question [SEP] context window [SEP], one feature per window
    model -> start/end logits per token -> best valid span over all windows -> answer text
    answer text vs. gold answers -> exact match and F1, the official evaluate-v1.1.py logic

The paper's reference code (VITA-Group/BERT-Tickets, LT_squad.py) evaluates a little differently,
in its vendored transformers 2.x (transformers-master/src/transformers/data/, cited below as
processors/squad.py and metrics/squad_metrics.py): every feature is padded to max_length, the n
best starts and ends are taken over all positions, padding included, a question with no valid
span is answered "empty", and the scores come from transformers 2.x's squad_evaluate.
`score_logits(..., evaluation="reference")` reproduces that; train.evaluate passes the setting
`squad_evaluation` on. The answer text is cut by character offsets either way (the reference
maps WordPieces back to words with get_final_text, metrics/squad_metrics.py:242-333).

Character offsets come from the `tokenizers` backend and refer to the ORIGINAL context string, so
an answer is cut out of the context exactly as written (accents, CJK and emoji included), even
though the normalizer lower-cases and strips accents before WordPiece sees the text.
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from ..schemas import SQUAD, FileError, check, not_a_folder

DOWNLOAD_HINT = "python data_scripts/download_squad.py"


@dataclass
class SquadExample:
    """One question about one context, with every gold answer (v1.1 dev has several per question)."""

    qid: str
    question: str
    context: str
    answers: list[str]  # gold answer texts
    answer_starts: list[int]  # character index of each answer in `context`
    title: str = ""


@dataclass
class SquadDataset:
    """Examples, their window features, and the per-feature data that post-processing needs.

    `features[i]` is a plain dict that `minilth.data.collate` can batch. The lists below are
    parallel to `features` and stay out of the batches:
    `offsets[i][t]` is the (start, end) character span of token t in its example's context,
    None for question, special and padding tokens; `feature_example[i]` is the example index;
    `max_context[i][t]` says whether window i is the one where context token t has the most
    context on both sides (BERT's rule for tokens that appear in several windows).
    """

    examples: list[SquadExample]
    features: list[dict] = field(default_factory=list)
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)
    feature_example: list[int] = field(default_factory=list)
    max_context: list[list[bool]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)


# ---------------------------------------------------------------------------------------------
# Reading the official JSON


def read_squad(path: str | Path) -> list[SquadExample]:
    """Returns every question of a SQuAD v1.1 JSON file (data -> paragraphs -> qas) as examples.

    Each answer's `answer_start` must point at its text in the context; a row where it does not
    raises DataError naming the file and the question id.
    """
    path = not_a_folder(path)
    if not path.is_file():
        raise DataError(f"no SQuAD file at {path}: download SQuAD v1.1 with `{DOWNLOAD_HINT}`")
    try:
        with open(path, encoding="utf-8") as f:
            articles = check(SQUAD, json.load(f), path)["data"]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a JSON file ({type(error).__name__}): download SQuAD v1.1 again with "
                        f"`{DOWNLOAD_HINT} --force`") from None
    except FileError as error:
        raise DataError(f"{error}: it is not a SQuAD v1.1 file; download it again with `{DOWNLOAD_HINT} --force`") \
            from None
    examples = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                examples.append(_read_question(path, article.get("title", ""), context, qa))
    return examples


def _read_question(path: Path, title: str, context: str, qa: dict) -> SquadExample:
    """Returns one example, after checking that every answer sits where answer_start says."""
    qid = str(qa.get("id", "?"))
    answers = qa.get("answers") or []
    if not answers:
        raise DataError(f"{path}: question {qid} has no answer; unanswerable (SQuAD v2.0) "
                        f"questions are not supported, use the v1.1 files")
    texts, starts = [], []
    for answer in answers:
        text, start = answer["text"], int(answer["answer_start"])
        if context[start:start + len(text)] != text:
            raise DataError(f"{path}: question {qid}: answer {text!r} is not at character {start} "
                            f"of its context; the file is corrupt, re-download it")
        texts.append(text)
        starts.append(start)
    return SquadExample(qid, qa["question"], context, texts, starts, title)


# ---------------------------------------------------------------------------------------------
# Windows


def load_squad(path: str | Path, tokenizer, max_length: int = 384, doc_stride: int = 128,
               max_query_length: int = 64, max_examples: int | None = None,
               training: bool = False, progress: bool = True) -> SquadDataset:
    """Returns a SquadDataset: the file's examples and one feature per context window.

    A feature is [CLS] question [SEP] window [SEP], at most `max_length` tokens, the question
    cut to `max_query_length` tokens. `doc_stride` has the meaning of BERT's original
    run_squad.py: it is the STEP between the starts of consecutive windows (in context tokens),
    so windows overlap by (window length - doc_stride) tokens. (Hugging Face's `stride` argument
    is the overlap instead.) Every context token lies in at least one window.

    training=True: features carry start_positions/end_positions, the token indices of the first
    answer, or 0 ([CLS]) for both when the answer is not entirely inside the window.
    training=False: features carry "example_index" so that `postprocess` can group windows.
    """
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be at least 1 token, got {doc_stride}")
    if max_query_length + 3 >= max_length:
        raise ValueError(f"max_length {max_length} leaves no room for the context after a question "
                         f"of up to {max_query_length} tokens and 3 special tokens: raise max_length")
    examples = read_squad(path)
    if max_examples is not None:
        examples = examples[:max_examples]
    dataset = SquadDataset(examples)

    backend = tokenizer.backend
    questions = backend.encode_batch([e.question for e in examples], add_special_tokens=False)
    unique_contexts = list(dict.fromkeys(e.context for e in examples))  # paragraphs repeat per question
    context_encodings = dict(zip(unique_contexts,
                                 backend.encode_batch(unique_contexts, add_special_tokens=False)))
    for index, example in enumerate(tqdm(examples, desc=f"SQuAD windows {Path(path).name}",
                                         disable=not progress or len(examples) < 1000)):
        question_ids = questions[index].ids[:max_query_length]
        context = context_encodings[example.context]
        _add_windows(dataset, index, tokenizer, question_ids, context.ids, context.offsets,
                     max_length, doc_stride, training)
    return dataset


def _add_windows(dataset: SquadDataset, example_index: int, tokenizer, question_ids: list[int],
                 context_ids: list[int], context_offsets: list[tuple[int, int]], max_length: int,
                 doc_stride: int, training: bool) -> None:
    """Appends one feature per window of the context to `dataset`."""
    window_length = max_length - len(question_ids) - 3
    spans = window_spans(len(context_ids), window_length, doc_stride)
    prefix = [tokenizer.cls_id, *question_ids, tokenizer.sep_id]
    example = dataset.examples[example_index]
    answer_tokens = _answer_token_span(context_offsets, example.answer_starts[0],
                                       example.answer_starts[0] + len(example.answers[0]))
    for span_index, (start, length) in enumerate(spans):
        window = range(start, start + length)
        input_ids = prefix + [context_ids[t] for t in window] + [tokenizer.sep_id]
        feature = {
            "input_ids": input_ids,
            "token_type_ids": [0] * len(prefix) + [1] * (length + 1),
            "attention_mask": [1] * len(input_ids),
        }
        if training:
            feature["start_positions"], feature["end_positions"] = _window_targets(
                answer_tokens, start, length, len(prefix))
        else:
            feature["example_index"] = example_index
        dataset.features.append(feature)
        dataset.offsets.append([None] * len(prefix) + [tuple(context_offsets[t]) for t in window] + [None])
        dataset.max_context.append([False] * len(prefix)
                                   + [_is_max_context(spans, span_index, t) for t in window] + [False])
        dataset.feature_example.append(example_index)


def window_spans(num_tokens: int, window_length: int, doc_stride: int) -> list[tuple[int, int]]:
    """Returns (start, length) of each window over `num_tokens` context tokens, as BERT does.

    Windows start every `doc_stride` tokens (fewer if a window is shorter than the stride, so no
    token is skipped) until one reaches the end. An empty context still gets one empty window, so
    that every example has a feature and a prediction.
    """
    spans, start = [], 0
    while True:
        length = min(num_tokens - start, window_length)
        spans.append((start, length))
        if start + length >= num_tokens:
            return spans
        start += min(length, doc_stride)


def _is_max_context(spans: list[tuple[int, int]], span_index: int, position: int) -> bool:
    """Whether window `span_index` gives token `position` the most context (BERT's _check_is_max_context).

    The score is min(tokens to the left, tokens to the right) + 0.01 * window length; ties go to
    the earliest window.
    """
    best_score, best_index = None, None
    for index, (start, length) in enumerate(spans):
        end = start + length - 1
        if not start <= position <= end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return best_index == span_index


def _answer_token_span(offsets: list[tuple[int, int]], char_start: int,
                       char_end: int) -> tuple[int, int] | None:
    """Returns the first and last context token overlapping characters [char_start, char_end).

    None when no token overlaps (an answer made only of characters the normalizer removes).
    A token that straddles the answer's edge is included, so the span is the answer widened to
    word-piece boundaries.
    """
    overlapping = [t for t, (start, end) in enumerate(offsets) if start < char_end and end > char_start]
    if not overlapping:
        return None
    return overlapping[0], overlapping[-1]


def _window_targets(answer_tokens: tuple[int, int] | None, window_start: int, window_length: int,
                    prefix_length: int) -> tuple[int, int]:
    """Returns (start, end) token indices of the answer in a feature, (0, 0) = [CLS] when outside."""
    if answer_tokens is None:
        return 0, 0
    first, last = answer_tokens
    if first < window_start or last >= window_start + window_length:
        return 0, 0
    return first - window_start + prefix_length, last - window_start + prefix_length


# ---------------------------------------------------------------------------------------------
# From logits to answers


SELECTIONS = ("context", "all_positions")


def postprocess(dataset: SquadDataset, start_logits: Sequence, end_logits: Sequence, n_best: int = 20,
                max_answer_length: int = 30, use_max_context: bool = True, selection: str = "context",
                no_answer: str = "") -> dict[str, str]:
    """Returns {question id: predicted answer text}, the best span over all windows of each question.

    `start_logits[i]` / `end_logits[i]` are the logits of feature i (a row of a tensor or array,
    possibly right-padded). In each window the `n_best` highest start and end tokens are paired;
    a pair is skipped when either token is outside the context, end < start, the span is longer
    than `max_answer_length` tokens, or (use_max_context, as BERT and the reference run_squad.py
    do) the start token has more context in another window. The best pair by start + end logit
    wins; its text is cut from the original context by character offsets. A question with no
    valid span gets `no_answer`.

    selection="context" ranks the feature's own tokens only, so batch padding never matters.
    selection="all_positions" ranks every position of the row, padding included, as BERT's
    run_squad and the reference code do: padded positions with high logits then push valid
    tokens out of the n best. With rows padded to max_length and no_answer="empty" this is the
    reference's compute_predictions_logits for SQuAD v1.1 (metrics/squad_metrics.py:371-567).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection '{selection}'; use one of {', '.join(SELECTIONS)}")
    if len(start_logits) != len(dataset.features) or len(end_logits) != len(dataset.features):
        raise ValueError(f"got logits for {len(start_logits)}/{len(end_logits)} features, the dataset "
                         f"has {len(dataset.features)}: pass one row per feature, in order")
    best: dict[int, tuple[float, str]] = {}
    for i in range(len(dataset.features)):
        example_index = dataset.feature_example[i]
        candidate = _best_span_in_window(dataset, i, _as_numpy(start_logits[i]), _as_numpy(end_logits[i]),
                                         n_best, max_answer_length, use_max_context, selection)
        if candidate is not None and (example_index not in best or candidate[0] > best[example_index][0]):
            best[example_index] = candidate
    return {example.qid: best[index][1] if index in best else no_answer
            for index, example in enumerate(dataset.examples)}


def _best_span_in_window(dataset: SquadDataset, feature_index: int, start_logits: np.ndarray,
                         end_logits: np.ndarray, n_best: int, max_answer_length: int, use_max_context: bool,
                         selection: str) -> tuple[float, str] | None:
    """Returns (score, text) of the best valid span in one window, or None when there is none."""
    offsets = dataset.offsets[feature_index]
    max_context = dataset.max_context[feature_index]
    length = len(offsets)  # logits beyond it are padding
    if selection == "context":  # the reference ranks the whole padded row, dropping padding only after
        start_logits, end_logits = start_logits[:length], end_logits[:length]  # (metrics/squad_metrics.py:417-435)
    # ties rank the earlier position first, as the reference's stable sort does (metrics/squad_metrics.py:338)
    top_starts = np.argsort(-start_logits, kind="stable")[:n_best]
    top_ends = np.argsort(-end_logits, kind="stable")[:n_best]
    best = None
    for start in top_starts:
        if start >= length or offsets[start] is None or (use_max_context and not max_context[start]):
            continue
        for end in top_ends:
            if end >= length or offsets[end] is None or end < start or end - start + 1 > max_answer_length:
                continue
            score = float(start_logits[start] + end_logits[end])
            if best is None or score > best[0]:
                context = dataset.examples[dataset.feature_example[feature_index]].context
                best = (score, context[offsets[start][0]:offsets[end][1]])
    return best


def _as_numpy(row) -> np.ndarray:
    """Returns a 1-D float64 array from a tensor row (any device), array or list."""
    if hasattr(row, "detach"):
        row = row.detach().float().cpu().numpy()
    return np.asarray(row, dtype=np.float64).reshape(-1)


EVALUATIONS = ("official", "reference")  # minilth's evaluation, and the paper's reference code's


def score_logits(dataset: SquadDataset, start_logits: Sequence, end_logits: Sequence,
                 evaluation: str = "official") -> dict[str, float]:
    """Returns {"exact_match", "f1"} in percent for a model's logits (one row per feature).

    evaluation="official": the n best over each feature's own tokens, "" when no span is valid,
    the official v1.1 metrics. evaluation="reference": what LT_squad.py's evaluate does
    (LT_squad.py:551-568): the n best over all positions, so the rows must be padded to
    max_length as the reference pads every feature (processors/squad.py:139; train.evaluate
    does so), "empty" when no span is valid (metrics/squad_metrics.py:519-520), and
    transformers 2.x scoring.
    """
    if evaluation not in EVALUATIONS:
        raise ValueError(f"unknown SQuAD evaluation '{evaluation}'; use one of {', '.join(EVALUATIONS)}")
    reference = evaluation == "reference"
    predictions = postprocess(dataset, start_logits, end_logits, selection="all_positions" if reference else "context",
                              no_answer="empty" if reference else "")
    return squad_metrics(predictions, dataset.examples, scoring="transformers2" if reference else "official")


# ---------------------------------------------------------------------------------------------
# The metrics: the official v1.1 script (evaluate-v1.1.py), rewritten, and transformers 2.x's


def normalize_answer(text: str) -> str:
    """Returns the text lower-cased, without punctuation, without a/an/the, with single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)  # ASCII only, as in the official script


def exact_match(prediction: str, truths: Sequence[str]) -> float:
    """Returns 1.0 when the normalized prediction equals any normalized gold answer, else 0.0."""
    return max(float(normalize_answer(prediction) == normalize_answer(truth)) for truth in truths)


def f1(prediction: str, truths: Sequence[str]) -> float:
    """Returns the best token-level F1 (0-1) of the prediction against any gold answer."""
    return max(_f1_one(prediction, truth) for truth in truths)


def _f1_one(prediction: str, truth: str) -> float:
    """Returns token-level F1 between two answers, tokens counted with multiplicity."""
    predicted_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(truth).split()
    common = Counter(predicted_tokens) & Counter(truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(predicted_tokens)
    recall = num_same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


SCORINGS = ("official", "transformers2")


def squad_metrics(predictions: dict[str, str], examples: Sequence[SquadExample],
                  scoring: str = "official") -> dict[str, float]:
    """Returns {"exact_match", "f1"} in percent (0-100).

    scoring="official": the official evaluate-v1.1.py, right for SQuAD v1.1. Every question
    counts; a question without a prediction scores 0 for both.
    scoring="transformers2": transformers 2.x `squad_evaluate`, which the paper's reference code
    scores with (see `_transformers2_scores`). A question without a prediction is left out of
    the denominator (metrics/squad_metrics.py:85-87, 109; there its HasAns breakdown then fails
    on a KeyError, :121, but its predictions always answer every question).
    """
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring '{scoring}'; use one of {', '.join(SCORINGS)}")
    if not examples:
        raise DataError("no SQuAD examples to score: check the dev file and max_examples")
    score = _official_scores if scoring == "official" else _transformers2_scores
    scores = [score(predictions[e.qid], e.answers) for e in examples if e.qid in predictions]  # (em, f1) each
    denominator = len(examples) if scoring == "official" else len(scores)
    if denominator == 0:
        raise DataError("no prediction for any SQuAD question: check that the predictions' ids are the examples'")
    return {"exact_match": 100.0 * sum(em for em, _ in scores) / denominator,
            "f1": 100.0 * sum(f for _, f in scores) / denominator}


def _official_scores(prediction: str, truths: Sequence[str]) -> tuple[float, float]:
    """Returns (exact match, F1) of one prediction as evaluate-v1.1.py scores it."""
    return exact_match(prediction, truths), f1(prediction, truths)


def _transformers2_scores(prediction: str, truths: Sequence[str]) -> tuple[float, float]:
    """Returns (exact match, F1) of one prediction as transformers 2.x's squad_evaluate scores it.

    Gold answers that normalise to empty ("The", ".") are dropped, and [""] stands in when none
    is left (metrics/squad_metrics.py:79-83); F1 is 1 when prediction and gold both normalise to
    empty, where the official script gives 0 (compute_f1, metrics/squad_metrics.py:59-61).
    """
    truths = [truth for truth in truths if normalize_answer(truth)] or [""]
    if not normalize_answer(prediction):
        return exact_match(prediction, truths), float(truths == [""])
    return exact_match(prediction, truths), f1(prediction, truths)
