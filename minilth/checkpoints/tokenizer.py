"""WordPiece tokenization through the `tokenizers` package, built from a checkpoint's vocab.txt."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as _Backend
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from ..errors import CheckpointError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class Tokenizer:
    """BERT's WordPiece: lower-casing (as the checkpoint says), [CLS] a [SEP] b [SEP], type ids 0/1.

    `backend` is the plain `tokenizers.Tokenizer` with no truncation or padding set, for callers
    that need offsets or overflowing windows (SQuAD); `encode` covers everything else.
    """

    def __init__(self, vocab_file: str | Path, lowercase: bool = True):
        vocab = _read_vocab(Path(vocab_file))

        backend = _Backend(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        # strip_accents=None follows lowercase, as BERT's BasicTokenizer does
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls, sep = vocab["[CLS]"], vocab["[SEP]"]
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        backend.decoder = decoders.WordPiece(prefix="##")
        self.backend = backend
        self.lowercase = lowercase
        self.vocab_size = len(vocab)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (vocab[t] for t in SPECIAL_TOKENS)
        self.special_ids = frozenset((self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id))

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Tokenizer":
        """Returns the tokenizer of a checkpoint folder: its vocab.txt, lower-casing from its config."""
        folder = Path(folder)
        return cls(folder / "vocab.txt", lowercase=_reads_lowercase(folder))

    def encode(self, text_a: list[str], text_b: list[str] | None = None,
               max_length: int = 128) -> dict[str, list[list[int]]]:
        """Returns unpadded input_ids, token_type_ids and attention_mask for a batch of texts or pairs.

        Pairs are truncated longest-first (one token at a time from the longer side) to max_length.
        """
        self.backend.enable_truncation(max_length, strategy="longest_first")
        try:
            inputs = text_a if text_b is None else list(zip(text_a, text_b))
            encodings = self.backend.encode_batch(inputs)
        finally:
            self.backend.no_truncation()
        return {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }

    def tokenize(self, text: str) -> list[str]:
        """Returns the WordPiece tokens of one text, without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: list[int]) -> str:
        """Returns the text of token ids, special tokens dropped."""
        return self.backend.decode(ids, skip_special_tokens=True)


def _read_vocab(vocab_file: Path) -> dict[str, int]:
    """Returns token -> id of a vocab.txt (one token a line, the id is the line's index), special tokens checked."""
    if not vocab_file.is_file():
        raise CheckpointError(f"no vocab.txt in {vocab_file.parent}: put the vocab.txt that came with the "
                              "checkpoint there")
    vocab = {}
    try:
        with open(vocab_file, encoding="utf-8") as f:
            for index, line in enumerate(f):
                vocab.setdefault(line.rstrip("\n"), index)
    except UnicodeDecodeError:
        raise CheckpointError(f"{vocab_file} is not UTF-8 text: download the checkpoint's vocab.txt again") from None
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise CheckpointError(f"{vocab_file} lacks the special tokens {missing}: is it a BERT vocab.txt? "
                              "use the one that came with the checkpoint")
    return vocab


def _reads_lowercase(folder: Path) -> bool:
    """Whether a checkpoint lower-cases: tokenizer_config.json says so, else its name ('cased' keeps case)."""
    config = folder / "tokenizer_config.json"
    if config.is_file():
        advice = "download it again, or delete it (lower-casing then follows the folder's name)"
        try:
            settings = json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"cannot read {config} ({error}): {advice}") from None
        value = settings.get("do_lower_case") if isinstance(settings, dict) else settings
        if isinstance(value, bool):
            return value
        if value is not None:
            raise CheckpointError(f"{config}: expected an object whose do_lower_case is true or false, "
                                  f"found {value!r}: {advice}")
    name = folder.name.lower()
    return not ("cased" in name and "uncased" not in name)
