"""The task table and the GLUE readers: every quirk on samples of the real files, counts on the complete
files (MINILTH_DATA_DIR), every bad-input error."""
import logging

import pytest

from minilth.errors import DataError, MinilthError
from minilth.data import glue
from minilth.data.folders import load_dataset, task_file
from minilth.data.glue import featurize, load_glue, read_examples
from minilth.data.tasks import TASKS, get_task

REAL_COUNTS = {  # (task, split): examples, counted independently by tests/conftest.read_tsv_column_pairs
    ("rte", "train"): 2490, ("rte", "dev"): 277,
    ("mrpc", "train"): 3667, ("mrpc", "dev"): 408,  # the shipped MRPC train.tsv has 3667 data rows (3668 lines)
    ("cola", "train"): 8551, ("cola", "dev"): 1043,
    ("sst2", "train"): 67349, ("sst2", "dev"): 872,
    ("stsb", "train"): 5749, ("stsb", "dev"): 1500,
    ("wnli", "train"): 635, ("wnli", "dev"): 71,
    ("qnli", "dev"): 5463,
}


SAMPLE_ROWS = 40  # examples in each file of tests/fixtures/glue


def assert_valid_labels(task, examples):
    labels = get_task(task).labels
    assert all(e.label in labels for e in examples) if labels else all(0.0 <= e.label <= 5.0 for e in examples)


@pytest.mark.parametrize("task,split", list(REAL_COUNTS))
def test_real_files_have_the_known_number_of_examples(full_glue_dir, task, split):
    examples, skipped = read_examples(task, task_file(task, full_glue_dir, split), split)
    assert len(examples) == REAL_COUNTS[task, split] and skipped == 0
    assert_valid_labels(task, examples)


@pytest.mark.parametrize("task,split", list(REAL_COUNTS))
def test_samples_read_like_the_real_files(glue_dir, task, split):
    examples, skipped = read_examples(task, task_file(task, glue_dir, split), split)
    assert len(examples) == SAMPLE_ROWS and skipped == 0
    assert_valid_labels(task, examples)
    if get_task(task).labels:
        assert len({e.label for e in examples}) > 1, "a sample with one label cannot test a classifier"


@pytest.mark.parametrize("task,split", list(REAL_COUNTS))
def test_samples_are_the_first_lines_of_the_real_files(glue_dir, full_glue_dir, task, split):
    sample = task_file(task, glue_dir, split).read_bytes()
    assert task_file(task, full_glue_dir, split).read_bytes().startswith(sample)
    assert sample.count(b"\n") == SAMPLE_ROWS + (get_task(task).headerless_columns is None)


def test_cola_has_no_header_and_its_test_file_has_one(glue_dir, tmp_path):
    examples, _ = read_examples("cola", glue_dir / "CoLA" / "dev.tsv", "dev")
    first_line = (glue_dir / "CoLA" / "dev.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert (examples[0].text_a, examples[0].label, examples[0].guid) == (first_line[3], first_line[1], "dev-1")
    assert examples[0].text_b is None
    test = tmp_path / "test.tsv"
    test.write_text("index\tsentence\n0\tBill whistled past the house.\n1\tThe car honked.\n", encoding="utf-8")
    examples, _ = read_examples("cola", test, "test")
    assert [(e.text_a, e.label) for e in examples] == [("Bill whistled past the house.", None), ("The car honked.", None)]


def test_mrpc_header_with_byte_order_mark_and_quotes(glue_dir):
    assert (glue_dir / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality")
    examples, _ = read_examples("mrpc", glue_dir / "MRPC" / "train.tsv", "train")
    assert examples[0].label == "1" and examples[1].label == "0"
    assert examples[0].text_a.startswith("Amrozi accused his brother , whom he called \" the witness \"")  # quotes kept


def test_stsb_scores_are_floats_in_examples_and_features(glue_dir, minilm_tokenizer):
    data = load_glue("stsb", glue_dir / "STS-B" / "dev.tsv", minilm_tokenizer, split="dev", max_examples=3)
    assert [e.label for e in data.examples] == [5.0, 4.75, 5.0]
    assert [f["labels"] for f in data.features] == [5.0, 4.75, 5.0]
    assert isinstance(data.features[0]["labels"], float) and get_task("stsb").num_labels == 1


def test_features_are_the_tokenizers_pairs_with_label_ids(glue_dir, minilm_tokenizer):
    data = load_dataset("rte", glue_dir, "dev", minilm_tokenizer, max_examples=30)
    assert len(data.examples) == len(data.features) == 30 and data.pad_id == minilm_tokenizer.pad_id
    expected = minilm_tokenizer.encode([e.text_a for e in data.examples], [e.text_b for e in data.examples], 128)
    assert [f["input_ids"] for f in data.features] == expected["input_ids"]
    assert [f["token_type_ids"] for f in data.features] == expected["token_type_ids"]
    assert all(len(f["input_ids"]) <= 128 for f in data.features)
    assert [f["labels"] for f in data.features] == [["entailment", "not_entailment"].index(e.label) for e in data.examples]
    assert data.examples[0].label == "not_entailment" and data.features[0]["labels"] == 1


def test_sst2_single_sentences_have_one_segment(glue_dir, minilm_tokenizer):
    data = load_dataset("SST-2", glue_dir, "train", minilm_tokenizer)
    assert len(data) == SAMPLE_ROWS and all(set(f["token_type_ids"]) == {0} for f in data.features)
    assert data.features[0]["input_ids"][0] == minilm_tokenizer.cls_id
    assert data.features[0]["input_ids"][-1] == minilm_tokenizer.sep_id


MNLI_TRAIN_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                     "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER.replace("label1\t", "label1\tlabel2\tlabel3\tlabel4\tlabel5\t")


def mnli_row(index, premise, hypothesis, labels):
    parses = "\t".join(["( ( x ) )"] * 4)
    return f"{index}\t31193\t31193n\tgovernment\t{parses}\t{premise}\t{hypothesis}\t" + "\t".join(labels)


def test_mnli_files_in_their_exact_format(tmp_path, minilm_tokenizer):
    folder = tmp_path / "glue" / "MNLI"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("\n".join([
        MNLI_TRAIN_HEADER,
        mnli_row(0, "Conceptually cream skimming has two basic dimensions.", "Product and geography are what make cream skimming work. ", ["neutral", "neutral"]),
        mnli_row(1, 'He said, "yes.', "He agreed.", ["entailment", "entailment"]),
        mnli_row(2, "One of our number will carry out your instructions.", "A member of my team won't.", ["contradiction", "contradiction"]),
    ]) + "\n", encoding="utf-8")
    (folder / "dev_matched.tsv").write_text("\n".join([
        MNLI_DEV_HEADER,
        mnli_row(0, "The new rights are nice enough", "Everyone really likes the newest benefits ",
                 ["neutral", "entailment", "neutral", "neutral", "neutral", "neutral"]),
    ]) + "\n", encoding="utf-8")
    (folder / "dev_mismatched.tsv").write_text("\n".join([
        MNLI_DEV_HEADER,
        mnli_row(0, "Your contribution helped make it possible.", "Your contributions were of no help.",
                 ["contradiction", "contradiction", "contradiction", "contradiction", "neutral", "contradiction"]),
    ]) + "\n", encoding="utf-8")
    task = get_task("MNLI")
    assert task.eval_splits == ("dev_matched", "dev_mismatched") and task.eval_split == "dev_matched"
    train = load_dataset(task, tmp_path / "glue", "train", minilm_tokenizer)
    assert [f["labels"] for f in train.features] == [2, 1, 0]  # contradiction, entailment, neutral
    assert train.examples[1].text_a == 'He said, "yes.'  # unbalanced quote kept, row not merged
    matched = load_dataset(task, tmp_path / "glue", "dev_matched", minilm_tokenizer)
    mismatched = load_dataset(task, tmp_path / "glue", "dev_mismatched", minilm_tokenizer)
    assert matched.features[0]["labels"] == 2 and mismatched.features[0]["labels"] == 0  # gold_label, not label1
    assert mismatched.examples[0].text_b == "Your contributions were of no help."


def test_qqp_skips_short_rows_and_warns_once_with_the_count(tmp_path, minilm_tokenizer, caplog):
    path = tmp_path / "train.tsv"
    path.write_text("\n".join([
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough?\t0",
        "201841\t303345\t303346\tHow do I control my horny emotions?\t",  # short: reference code skips it
        "85669\t141461\t141462\tWhat is \"the best\" way?\t\"What's the best way?\"\t1",
        "4242\t4243\tonly three fields",
    ]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="minilth.data.glue"):
        data = load_glue("qqp", path, minilm_tokenizer, split="train")
    assert data.skipped_rows == 2 and [f["labels"] for f in data.features] == [0, 1]
    assert data.examples[1].text_a == 'What is "the best" way?'
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 malformed rows" in warnings[0]


def test_missing_file_names_the_path_and_the_download_script(glue_dir, minilm_tokenizer):
    with pytest.raises(DataError) as error:
        load_dataset("qnli", glue_dir, "train", minilm_tokenizer)
    message = str(error.value)
    assert str(glue_dir / "QNLI" / "train.tsv") in message
    assert "python data_scripts/download_glue.py --tasks QNLI" in message and "\n" not in message
    with pytest.raises(DataError, match="download_squad.py"):
        task_file("squad", glue_dir, "dev")
    with pytest.raises(DataError, match="no split 'validation'; its splits: train, dev, test"):
        task_file("rte", glue_dir, "validation")


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(MinilthError) as error:
        get_task("foo")
    assert str(error.value) == ("unknown task 'foo'; known tasks: "
                                "cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, squad, mlm, mlm_glue")
    assert isinstance(error.value, ValueError)


def write(tmp_path, text, name="train.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


def test_malformed_rows_and_bad_labels_name_file_and_line(tmp_path):
    path = write(tmp_path, RTE_HEADER + "0\tA man sleeps.\tA man rests.\tentailment\n1\tbroken row\tentailment\n")
    with pytest.raises(DataError, match=rf"{path}:3: 3 tab-separated fields where the header has 4"):
        read_examples("rte", path, "train")
    path = write(tmp_path, RTE_HEADER + "0\tA man sleeps.\tA man rests.\tentailment\n1\tA.\tB.\tmaybe\n")
    with pytest.raises(DataError, match=rf"{path}:3: label 'maybe' is not one of RTE's labels"):
        read_examples("rte", path, "train")
    path = write(tmp_path, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                           "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tAn air plane.\tfive\n")
    with pytest.raises(DataError, match=rf"{path}:2: score 'five' is not a number"):
        read_examples("stsb", path, "train")
    for score in ("nan", "99", "-0.5", "inf"):  # a number, but none of STS-B's similarities (0 to 5)
        path = write(tmp_path, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\t"
                               f"score\n0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tA jet.\t{score}\n")
        with pytest.raises(DataError, match=rf"{path}:2: score '{score}' is not a number from 0 to 5, STS-B's scale: "
                                            rf"the file is damaged; download it again"):
            read_examples("stsb", path, "train")
    path = write(tmp_path, "0\tA man sleeps.\tA man rests.\tentailment\n")  # header missing
    with pytest.raises(DataError, match=rf"{path}:1: no column 'sentence1'"):
        read_examples("rte", path, "train")


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("bad_line", [1, 5, 9000])  # 9000: far past the first block of text the file is decoded in
def test_a_byte_that_is_not_utf8_is_reported_at_its_line(tmp_path, bad_line, newline):
    lines = [b"\xef\xbb\xbf" + RTE_HEADER.strip().encode()]  # with a byte-order mark, as MRPC's files have
    lines += [f"{i}\tA man sleeps.\tA man rests.\tentailment".encode() for i in range(9000)]
    lines[bad_line - 1] = lines[bad_line - 1].replace(b"\t", b"\xff\t", 1)
    path = tmp_path / "train.tsv"
    path.write_bytes(newline.encode().join(lines) + newline.encode())
    position = lines[bad_line - 1].index(0xFF)
    with pytest.raises(DataError) as error:
        read_examples("rte", path, "train")
    assert str(error.value) == (f"{path}:{bad_line}: not UTF-8 ('utf-8' codec can't decode byte 0xff in position "
                                f"{position}: invalid start byte): save the file as UTF-8, or download it again")


def test_empty_splits_and_unlabelled_non_test_files_are_errors(tmp_path):
    with pytest.raises(DataError, match="holds no examples"):
        read_examples("rte", write(tmp_path, RTE_HEADER), "dev")
    with pytest.raises(DataError, match="is empty"):
        read_examples("rte", write(tmp_path, ""), "dev")
    unlabelled = "index\tsentence1\tsentence2\n0\tA man sleeps.\tA man rests.\n"
    with pytest.raises(DataError, match="no label column 'label'.*'dev' is not a test split"):
        read_examples("rte", write(tmp_path, unlabelled), "dev")
    examples, _ = read_examples("rte", write(tmp_path, unlabelled, "test.tsv"), "test")
    assert examples[0].label is None
    with pytest.raises(DataError, match="max_examples must be at least 1"):
        read_examples("rte", write(tmp_path, unlabelled, "test.tsv"), "test", max_examples=0)


def test_test_split_features_have_no_labels(tmp_path, minilm_tokenizer):
    path = write(tmp_path, "index\tsentence1\tsentence2\n0\tA man sleeps.\tA man rests.\n", "test.tsv")
    data = load_glue("rte", path, minilm_tokenizer, split="test")
    assert "labels" not in data.features[0] and len(data.features[0]["input_ids"]) > 4


def test_get_task_accepts_the_usual_spellings():
    for alias, name in [("SST-2", "sst2"), ("sst-2", "sst2"), ("sst2", "sst2"), ("STS-B", "stsb"),
                        ("squad", "squad"), ("squad1.1", "squad"), ("SQuAD", "squad"), ("MNLI", "mnli"),
                        ("CoLA", "cola"), ("mlm", "mlm")]:
        assert get_task(alias).name == name
    assert get_task(get_task("rte")) is get_task("rte")


def test_table_holds_every_task_of_the_paper_with_its_settings():
    assert list(TASKS) == ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "squad", "mlm",
                           "mlm_glue"]
    assert get_task("mnli").labels == ("contradiction", "entailment", "neutral")
    assert get_task("rte").labels == get_task("qnli").labels == ("entailment", "not_entailment")
    assert all(get_task(t).labels == ("0", "1") for t in ("mrpc", "qqp", "sst2", "cola", "wnli"))
    assert [get_task(t).num_labels for t in ("mnli", "rte", "stsb")] == [3, 2, 1]
    assert {t.name: t.ticket_metric for t in TASKS.values()} == {
        "cola": "mcc", "sst2": "acc", "mrpc": "acc", "qqp": "acc", "stsb": "pearson", "mnli": "acc", "qnli": "acc",
        "rte": "acc", "wnli": "acc", "squad": "f1", "mlm": "accuracy", "mlm_glue": "accuracy"}
    assert get_task("mrpc").metrics == get_task("qqp").metrics == ("acc", "f1")
    assert get_task("stsb").metrics == ("pearson", "spearman") and get_task("squad").metrics == ("exact_match", "f1")
    glue = [t for t in TASKS.values() if t.kind in ("classification", "regression")]
    assert len(glue) == 9 and all((t.learning_rate, t.batch_size, t.epochs, t.max_length,
                                   t.weight_decay) == (2e-5, 32, 3, 128, 0.0) for t in glue)
    squad, mlm = get_task("squad"), get_task("mlm")
    assert (squad.learning_rate, squad.batch_size, squad.max_length, squad.doc_stride, squad.max_query_length) == \
        (3e-5, 16, 384, 128, 64)
    assert (mlm.learning_rate, mlm.batch_size, mlm.mlm_probability, mlm.max_length) == (5e-5, 16, 0.15, 128)
    assert {t.name: t.paper_ticket_sparsity for t in TASKS.values()} == {
        "mnli": 70, "qqp": 90, "stsb": 50, "wnli": 90, "qnli": 70, "mrpc": 50, "rte": 60, "sst2": 60, "cola": 50,
        "squad": 40, "mlm": 70, "mlm_glue": None}  # no paper row: MLM on GLUE's sentences is minilth's CPU corpus
    assert (get_task("rte").paper_full_bert, get_task("rte").paper_full_bert_std) == (66.1, 4.4)


def test_squad_and_mlm_load_from_beside_the_glue_folder_with_the_tasks_lengths(tmp_path, glue_dir, minilm_tokenizer):
    """SQuAD: windows of at most 384 tokens, 128 apart, the question cut to 64; training targets for "train" only.
    MLM: blocks of 128 tokens. A context of 900 tokens and a question of 100 make every length bind."""
    import json
    import shutil

    from minilth.data.squad import load_squad
    context = " ".join(["the cat sat on the mat"] * 150)  # 900 tokens
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "where " * 100 + "?", "answers": [{"text": "mat", "answer_start": 19}]}]}]}]}
    (tmp_path / "squad").mkdir()
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (tmp_path / "squad" / name).write_text(json.dumps(squad))
    shutil.copytree(glue_dir.parent / "wikitext", tmp_path / "wikitext-103-raw")

    train = load_dataset("squad1.1", tmp_path / "glue", "train", minilm_tokenizer)  # found beside glue/
    dev = load_dataset("squad1.1", tmp_path / "glue", "dev", minilm_tokenizer)
    lengths = [len(feature["input_ids"]) for feature in train.features]
    assert max(lengths) == 384 and len(lengths) == 6  # 900 context tokens in windows of 384 - 64 - 3, 128 apart
    assert all(feature["token_type_ids"].count(0) == 1 + 64 + 1 for feature in train.features)  # [CLS] q [SEP]
    word_starts = [0, 4, 8, 12, 15, 19]  # "the cat sat on the mat ": 6 tokens in 23 characters
    window_starts = [next(offset for offset in offsets if offset is not None)[0] for offsets in train.offsets]
    assert window_starts == [23 * (token // 6) + word_starts[token % 6] for token in range(0, 6 * 128, 128)]
    assert all("start_positions" in f for f in train.features) and not any("start_positions" in f for f in dev.features)
    assert train.features == load_squad(tmp_path / "squad" / "train-v1.1.json", minilm_tokenizer, max_length=384,
                                        doc_stride=128, max_query_length=64, training=True).features

    mlm = load_dataset("mlm", tmp_path, "dev", minilm_tokenizer)
    assert {len(feature["input_ids"]) for feature in mlm.features} == {128} and len(mlm) >= 2


def test_featurize_truncates_long_pairs_to_max_length(minilm_tokenizer):
    from minilth.data.glue import Example
    examples = [Example("x-1", "word " * 300, "other " * 10, "entailment")]
    feature = featurize("rte", examples, minilm_tokenizer, max_length=64)[0]
    assert len(feature["input_ids"]) == 64 and feature["token_type_ids"].count(1) == 11  # 10 words + [SEP]


def test_tokenizing_bar_shows_for_big_files_unless_progress_is_false(glue_dir, minilm_tokenizer, capsys, monkeypatch):
    monkeypatch.setattr(glue, "ENCODE_CHUNK", 16)  # 40 sentences: more than one chunk, as a big file is
    load_dataset("cola", glue_dir, "train", minilm_tokenizer)
    assert "tokenize CoLA" in capsys.readouterr().err
    load_dataset("cola", glue_dir, "train", minilm_tokenizer, progress=False)  # what --quiet passes
    assert "tokenize CoLA" not in capsys.readouterr().err
