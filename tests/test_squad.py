"""SQuAD v1.1: reading, windows over unicode contexts, training targets, post-processing, EM/F1."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minilth.data.batches import collate
from minilth.errors import DataError
from minilth.settings import SettingsError
from minilth.data.squad import (SquadExample, exact_match, f1, load_squad, normalize_answer, postprocess, read_squad,
                           score_logits, squad_metrics, window_spans)
from minilth.data.tasks import get_task
from minilth.train import FinetuneSettings, evaluate, finetune, model_for_task

FIXTURE = Path(__file__).parent / "fixtures" / "squad_tiny.json"
MAX_LENGTH, DOC_STRIDE, MAX_QUERY = 48, 16, 16  # small, so each 110-token context needs 6 windows


@pytest.fixture(scope="module")
def eval_set(minilm_tokenizer):
    return load_squad(FIXTURE, minilm_tokenizer, max_length=MAX_LENGTH, doc_stride=DOC_STRIDE,
                      max_query_length=MAX_QUERY)


@pytest.fixture(scope="module")
def train_set(minilm_tokenizer):
    return load_squad(FIXTURE, minilm_tokenizer, max_length=MAX_LENGTH, doc_stride=DOC_STRIDE,
                      max_query_length=MAX_QUERY, training=True)


def context_span(offsets):
    """(first character, last character + 1) of the context tokens of one feature."""
    spans = [o for o in offsets if o is not None]
    return spans[0][0], spans[-1][1]


def answer_inside(example, offsets):
    start = example.answer_starts[0]
    first, last = context_span(offsets)
    return first <= start and start + len(example.answers[0]) <= last


def answer_overlaps(example, offsets):
    start = example.answer_starts[0]
    first, last = context_span(offsets)
    return first < start + len(example.answers[0]) and start < last


# --- reading -------------------------------------------------------------------------------------

def test_read_squad_keeps_unicode_and_every_answer():
    examples = read_squad(FIXTURE)
    assert [e.qid for e in examples] == [f"q{i}" for i in range(1, 13)]
    by_id = {e.qid: e for e in examples}
    assert by_id["q2"].answers == ["Señora Inés Ibáñez", "Inés Ibáñez"]
    assert by_id["q7"].answers == ["東京タワー"] and by_id["q7"].answer_starts == [0]
    for e in examples:
        for text, start in zip(e.answers, e.answer_starts):
            assert e.context[start:start + len(text)] == text


def test_read_squad_rejects_a_misplaced_answer(tmp_path):
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    data["data"][1]["paragraphs"][0]["qas"][2]["answers"][0]["answer_start"] += 1  # q8
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json.*q8"):
        read_squad(bad)


def test_read_squad_missing_file_says_how_to_download(tmp_path):
    with pytest.raises(DataError, match="data_scripts/download_squad.py"):
        read_squad(tmp_path / "dev-v1.1.json")


def test_read_squad_rejects_unanswerable_questions(tmp_path):
    path = tmp_path / "v2.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "abc", "qas": [{"id": "x1", "question": "?", "answers": []}]}]}]}))
    with pytest.raises(DataError, match="x1"):
        read_squad(path)


# --- windows -------------------------------------------------------------------------------------

def test_window_spans_step_by_doc_stride_and_reach_the_end():
    assert window_spans(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]  # the last one ends at token 10
    assert window_spans(3, 4, 3) == [(0, 3)]
    assert window_spans(10, 4, 6) == [(0, 4), (4, 4), (8, 2)]  # a stride above the window skips nothing
    assert window_spans(0, 4, 2) == [(0, 0)]


def test_features_are_cls_question_sep_window_sep(eval_set, minilm_tokenizer):
    tok = minilm_tokenizer
    for feature, offsets, example_index in zip(eval_set.features, eval_set.offsets, eval_set.feature_example):
        example = eval_set.examples[example_index]
        ids, types = feature["input_ids"], feature["token_type_ids"]
        question = tok.backend.encode(example.question, add_special_tokens=False).ids[:MAX_QUERY]
        n_prefix = len(question) + 2
        assert len(ids) <= MAX_LENGTH and len(ids) == len(types) == len(offsets) == len(feature["attention_mask"])
        assert ids[:n_prefix] == [tok.cls_id, *question, tok.sep_id] and ids[-1] == tok.sep_id
        assert types == [0] * n_prefix + [1] * (len(ids) - n_prefix)
        assert all(o is None for o in offsets[:n_prefix]) and offsets[-1] is None
        assert all(o is not None for o in offsets[n_prefix:-1])
        assert feature["example_index"] == example_index
        assert "start_positions" not in feature


def test_windows_cover_every_context_token_with_a_step_of_doc_stride(eval_set, minilm_tokenizer):
    for index, example in enumerate(eval_set.examples):
        context = minilm_tokenizer.backend.encode(example.context, add_special_tokens=False)
        windows = [[o for o in offsets if o is not None]
                   for offsets, e in zip(eval_set.offsets, eval_set.feature_example) if e == index]
        covered = {o for window in windows for o in window}
        assert covered == set(map(tuple, context.offsets))
        first_tokens = [context.offsets.index(window[0]) for window in windows]
        assert first_tokens == [DOC_STRIDE * k for k in range(len(windows))]
        assert len(windows) == (6 if len(context.ids) > 100 else 1)
        # each context token is scored in exactly one window: the one with the most context around it
        chosen = max_context_counts(eval_set, index)
        assert set(chosen) == covered and set(chosen.values()) == {1}


def max_context_counts(dataset, example_index):
    counts = {}
    for i, e in enumerate(dataset.feature_example):
        if e == example_index:
            for o, is_max in zip(dataset.offsets[i], dataset.max_context[i]):
                if is_max:
                    counts[o] = counts.get(o, 0) + 1
    return counts


def test_offsets_refer_to_the_original_unicode_context(eval_set):
    # the normalizer lower-cases and strips accents; the offsets must still cut the original text
    example = next(e for e in eval_set.examples if e.qid == "q1")
    i = eval_set.feature_example.index(eval_set.examples.index(example))
    pieces = [example.context[s:e] for s, e in (o for o in eval_set.offsets[i] if o is not None)]
    assert pieces[:7] == ["The", "Café", "Müller", "in", "Zürich", "opened", "in"]


# --- training targets ----------------------------------------------------------------------------

def test_training_targets_cover_exactly_the_answer_or_point_at_cls(train_set):
    inside = partial = 0
    for feature, offsets, example_index in zip(train_set.features, train_set.offsets, train_set.feature_example):
        example = train_set.examples[example_index]
        start, end = feature["start_positions"], feature["end_positions"]
        assert "example_index" not in feature
        if answer_inside(example, offsets):
            inside += 1
            # the fixture's answers end on word boundaries, so the tokens cover exactly the answer
            assert example.context[offsets[start][0]:offsets[end][1]] == example.answers[0]
        else:
            partial += answer_overlaps(example, offsets)
            assert (start, end) == (0, 0)
    # windows that hold a whole answer, q1..q12: 1+2+1+1+2+2+1+3+2+2+3+1 (read once off the windows)
    assert inside == 21
    assert partial == 2  # answers cut by a window edge do occur, and get (0, 0)


# --- post-processing -----------------------------------------------------------------------------

def gold_logits(dataset, value=10.0):
    """Logits 0 everywhere but `value` at the gold start and end token of every window holding the answer."""
    starts, ends = [], []
    for offsets, example_index in zip(dataset.offsets, dataset.feature_example):
        example = dataset.examples[example_index]
        s, e = np.zeros(len(offsets)), np.zeros(len(offsets))
        if answer_inside(example, offsets):
            a0 = example.answer_starts[0]
            a1 = a0 + len(example.answers[0])
            context = [t for t, o in enumerate(offsets) if o is not None]
            s[[t for t in context if offsets[t][1] > a0][0]] = value
            e[[t for t in context if offsets[t][0] < a1][-1]] = value
        starts.append(s)
        ends.append(e)
    return starts, ends


@pytest.mark.parametrize("use_max_context", [True, False])
def test_gold_logits_give_em_and_f1_of_100(eval_set, use_max_context):
    starts, ends = gold_logits(eval_set)
    predictions = postprocess(eval_set, starts, ends, use_max_context=use_max_context)
    assert predictions["q7"] == "東京タワー" and predictions["q2"] == "Señora Inés Ibáñez"
    assert squad_metrics(predictions, eval_set.examples) == {"exact_match": 100.0, "f1": 100.0}


def test_postprocess_takes_padded_tensors(eval_set):
    starts, ends = gold_logits(eval_set)
    width = MAX_LENGTH + 5  # batch padding beyond each feature: must be ignored
    padded = [torch.zeros(len(starts), width), torch.zeros(len(ends), width)]
    for rows, tensor in zip((starts, ends), padded):
        for i, row in enumerate(rows):
            tensor[i, :len(row)] = torch.from_numpy(row)
        tensor[:, -1] = 1000.0  # a huge logit on padding
    predictions = postprocess(eval_set, padded[0], padded[1])
    assert squad_metrics(predictions, eval_set.examples)["exact_match"] == 100.0


def q12_logits(eval_set, padding: float):
    """Zero logits, rows padded to MAX_LENGTH with `padding`; the index of q12's feature and its context tokens."""
    index = next(i for i, e in enumerate(eval_set.examples) if e.qid == "q12")
    feature = eval_set.feature_example.index(index)
    tokens = [t for t, o in enumerate(eval_set.offsets[feature]) if o is not None]
    starts, ends = np.zeros((2, len(eval_set.features), MAX_LENGTH))  # (N, T) each
    for row, offsets in enumerate(eval_set.offsets):
        starts[row, len(offsets):] = ends[row, len(offsets):] = padding
    return starts, ends, feature, tokens


def test_postprocess_skips_invalid_spans(eval_set):
    # q12's context fits one window: "ang ##strom units measure 10 ##⁻ ##¹ ##⁰ metres ."
    starts, ends, feature, tokens = q12_logits(eval_set, padding=0.0)
    context = eval_set.examples[eval_set.feature_example[feature]].context
    s, e = starts[feature], ends[feature]
    s[0] = e[0] = 100.0  # [CLS] and the question are not context: never an answer
    s[1] = e[1] = 90.0
    s[tokens[-1]], e[tokens[2]] = 80.0, 80.0  # end before start: refused
    s[tokens[0]] = 5.0  # the best valid span is "Ångström units"
    assert postprocess(eval_set, starts, ends)["q12"] == "Ångström units"

    # a span longer than max_answer_length tokens is refused
    s[:], e[:] = 0.0, 0.0
    s[tokens[0]], e[tokens[-1]] = 9.0, 9.0  # the whole context, 10 tokens
    s[tokens[-2]] = 1.0  # "metres ."
    assert postprocess(eval_set, starts, ends, max_answer_length=10)["q12"] == context
    assert postprocess(eval_set, starts, ends, max_answer_length=9)["q12"] == "metres."


@pytest.mark.parametrize("first_padded, reference_answer", [(100.0, "measure 10"), (-100.0, "Ångström units")])
def test_selection_over_all_positions_lets_padding_push_tokens_out(eval_set, first_padded, reference_answer):
    # q12: "ang ##strom units measure 10 ##⁻ ##¹ ##⁰ metres ."; n_best 2, one padded start outranking the context
    starts, ends, feature, tokens = q12_logits(eval_set, padding=-100.0)
    starts[feature, len(eval_set.offsets[feature])] = first_padded
    starts[feature, tokens[3]], starts[feature, tokens[0]] = 5.0, 4.0  # "measure", then "Ångström"
    ends[feature, tokens[2]], ends[feature, tokens[4]] = 5.0, 1.0  # "units" (before "measure"), then "10"
    # the feature's own tokens: the 2 best starts pair into "Ångström units" (4 + 5)
    assert postprocess(eval_set, starts, ends, n_best=2)["q12"] == "Ångström units"
    # all positions: the padded start takes a place, "Ångström" drops out, "measure 10" (5 + 1) is left;
    # with a very low padding logit the two selections agree
    assert postprocess(eval_set, starts, ends, n_best=2, selection="all_positions")["q12"] == reference_answer
    context = postprocess(eval_set, starts, ends)
    assert postprocess(eval_set, starts, ends, selection="all_positions") == context  # 20 best: room for both


def test_no_valid_span_is_empty_text_or_the_reference_word_empty(eval_set):
    starts, ends, feature, tokens = q12_logits(eval_set, padding=100.0)  # 28 padded positions: more than 20
    starts[:, 1], ends[:, 1] = 50.0, 50.0  # the question's first token: never an answer
    starts[feature, tokens[0]], ends[feature, tokens[1]] = 5.0, 5.0
    context = postprocess(eval_set, starts, ends)
    assert context["q12"] == "Ångström"  # the padding is ignored
    reference = postprocess(eval_set, starts, ends, selection="all_positions", no_answer="empty")
    assert reference["q12"] == "empty"  # the 20 best are all padding
    # with only the question in the n best, there is no valid span either way
    assert postprocess(eval_set, starts, ends, n_best=1)["q12"] == ""
    assert postprocess(eval_set, starts, ends, n_best=1, no_answer="empty")["q12"] == "empty"


def test_postprocess_and_scoring_reject_unknown_modes(eval_set):
    starts, ends = gold_logits(eval_set)
    with pytest.raises(ValueError, match="all_positions"):
        postprocess(eval_set, starts, ends, selection="padding")
    with pytest.raises(ValueError, match="transformers2"):
        squad_metrics({}, eval_set.examples, scoring="transformers")
    with pytest.raises(ValueError, match="reference"):
        score_logits(eval_set, starts, ends, evaluation="paper")
    with pytest.raises(SettingsError, match="--squad-evaluation"):
        FinetuneSettings(squad_evaluation="paper")


def test_postprocess_wants_one_row_per_feature(eval_set):
    with pytest.raises(ValueError, match="one row per feature"):
        postprocess(eval_set, [np.zeros(3)], [np.zeros(3)])


# --- the official metrics ------------------------------------------------------------------------

def test_normalize_answer_follows_the_official_script():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An Apple a day") == "apple day"
    assert normalize_answer("theatre anthem") == "theatre anthem"  # articles only as whole words
    assert normalize_answer("Señor-Müller's.") == "señormüllers"  # ASCII punctuation only is removed
    assert normalize_answer("x–y") == "x–y"  # an en dash is not string.punctuation...
    assert normalize_answer("a–b") == "–b"  # ...but it is a word boundary, so "a" goes
    assert normalize_answer("\tTHE\nend ") == "end"


def test_exact_match_and_f1_by_hand():
    assert exact_match("The  Cat, sat!", ["cat sat"]) == 1.0
    assert exact_match("cat", ["dog", "Cat."]) == 1.0  # max over the gold answers
    assert exact_match("the cat sat", ["a cat sat on"]) == 0.0
    # "cat sat" vs "cat sat on": 2 common tokens, precision 2/2, recall 2/3, F1 = 2*(2/3)/(5/3) = 0.8
    assert f1("the cat sat", ["a cat sat on"]) == pytest.approx(0.8)
    # "cat cat cat" vs "cat dog": common min(3,1)=1, precision 1/3, recall 1/2, F1 = (1/3)/(5/6) = 0.4
    assert f1("cat cat cat", ["cat dog"]) == pytest.approx(0.4)
    assert f1("cat cat cat", ["cat dog", "dog"]) == pytest.approx(0.4)  # max over the gold answers
    assert f1("dog", ["cat"]) == 0.0
    # the official script's quirk: an empty answer matches exactly but has no tokens, so F1 0
    assert exact_match("", ["The"]) == 1.0 and f1("", ["The"]) == 0.0


def test_squad_metrics_in_percent_missing_predictions_count_zero():
    examples = read_squad(FIXTURE)[:4]  # q1 "1887", q2 "Señora Inés Ibáñez"/"Inés Ibáñez", q3, q4
    predictions = {
        "q1": "1887",  # EM 1, F1 1
        "q2": "bought by Inés Ibáñez",  # vs "Inés Ibáñez": P 2/4, R 2/2, F1 = 1/(1.5) = 2/3
        "q4": "tea",  # 0, 0; q3 has no prediction: 0, 0
    }
    metrics = squad_metrics(predictions, examples)
    assert metrics["exact_match"] == pytest.approx(25.0)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3) / 4)  # 41.67


def test_transformers2_scoring_drops_empty_golds_and_unanswered_questions():
    def question(qid, *answers):
        return SquadExample(qid, "?", " ".join(answers), list(answers), [0] * len(answers))

    examples = [question("only_the", "The"), question("the_or_cat", "The", "cat"), question("dog", "a dog"),
                question("missing", "x")]
    predictions = {"only_the": "", "the_or_cat": "", "dog": "the dog"}
    # official: "" matches "The" exactly (both normalise to "") but has F1 0; "missing" counts 0 of 4
    assert squad_metrics(predictions, examples) == {"exact_match": 75.0, "f1": 25.0}
    # transformers 2.x: "The" is dropped (only_the: gold [""], so EM 1 and F1 1 for empty vs empty;
    # the_or_cat: gold ["cat"], so 0 and 0), and "missing" is left out: over 3 questions
    scores = squad_metrics(predictions, examples, scoring="transformers2")
    assert scores == pytest.approx({"exact_match": 200 / 3, "f1": 200 / 3})
    # the reference's "empty" is an ordinary wrong answer, even against an empty gold
    assert squad_metrics({"only_the": "empty"}, examples, scoring="transformers2") == {"exact_match": 0.0, "f1": 0.0}
    with pytest.raises(DataError, match="no prediction"):
        squad_metrics({}, examples, scoring="transformers2")


def test_features_collate_into_batches(train_set, eval_set):
    batch = collate(train_set.features[:8])
    assert batch["input_ids"].shape == (8, MAX_LENGTH) and batch["start_positions"].shape == (8,)
    assert batch["start_positions"].tolist() == [f["start_positions"] for f in train_set.features[:8]]
    batch = collate(eval_set.features[-3:])  # q11's last window is shorter: padded
    assert batch["attention_mask"].sum(1).tolist() == [len(f["input_ids"]) for f in eval_set.features[-3:]]
    assert batch["example_index"].tolist() == [10, 10, 11]


# --- evaluation end to end: minilth's and the reference code's ----------------------------------

def test_evaluate_pads_to_max_length_and_scores_as_the_reference(tiny_checkpoint, train_set, eval_set):
    task = dataclasses.replace(get_task("squad"), max_length=MAX_LENGTH)
    model = model_for_task(tiny_checkpoint, task, seed=0)
    widths = []  # the sequence length of every evaluation forward
    model.qa_outputs.register_forward_hook(lambda m, i, out: widths.append(out.shape[1]) if not m.training else None)
    history = finetune(model, task, train_set, eval_set, epochs=1, batch_size=16, squad_evaluation="reference",
                       progress=False, device="cpu")
    assert widths == [MAX_LENGTH]  # one batch of all 67 features, padded to max_length
    widths.clear()
    official = evaluate(model, task, eval_set, eval_batch_size=1, device="cpu")
    assert widths == [len(f["input_ids"]) for f in eval_set.features] and min(widths) < MAX_LENGTH  # no padding
    widths.clear()
    reference = evaluate(model, task, eval_set, eval_batch_size=1, device="cpu", squad_evaluation="reference")
    assert set(widths) == {MAX_LENGTH} and reference == pytest.approx(history.final)

    # the same numbers by hand: the model on all features padded to max_length, then each evaluation
    model.eval()
    with torch.no_grad():
        batch = collate(eval_set.features, pad_to=MAX_LENGTH)
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (N, T) logits
    assert reference == pytest.approx(score_logits(eval_set, out.start_logits, out.end_logits, "reference"))
    assert official == pytest.approx(score_logits(eval_set, out.start_logits, out.end_logits, "official"))
