"""WordPiece tokenization through the `tokenizers` package, built from a checkpoint's vocab.txt."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as _Backend
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class Tokenizer:
    """BERT's WordPiece: lower-casing (as the checkpoint says), [CLS] a [SEP] b [SEP], type ids 0/1.

    `backend` is the plain `tokenizers.Tokenizer` with no truncation or padding set, for callers
    that need offsets or overflowing windows (SQuAD); `encode` covers everything else.
    """

    def __init__(self, vocab_file: str | Path, lowercase: bool = True):
        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise FileNotFoundError(f"no vocab.txt at {vocab_file}: pass a checkpoint folder that has one")
        vocab = {}
        with open(vocab_file, encoding="utf-8") as f:
            for index, line in enumerate(f):
                vocab.setdefault(line.rstrip("\n"), index)
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"{vocab_file} lacks the special tokens {missing}: is it a BERT vocab.txt?")

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


def _reads_lowercase(folder: Path) -> bool:
    """Whether a checkpoint lower-cases: tokenizer_config.json says so, else its name ('cased' keeps case)."""
    config = folder / "tokenizer_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("do_lower_case")
        if value is not None:
            return bool(value)
    name = folder.name.lower()
    return not ("cased" in name and "uncased" not in name)
