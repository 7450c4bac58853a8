"""The same BERT, computed faster: BertConfig.execution chooses this package's forward or the textbook one.

    model.config.execution = "textbook"   # model.py, as written there
    model.config.execution = "padded"     # encoder.py on the padded batch: cheaper dropout, fused attention
    model.config.execution = "unpadded"   # and only the real tokens (the default)

Nothing here changes a number a real token gets (tests/test_fast.py); benchmarks/ measures the gain.
"""
from .dropout import dropout
from .encoder import bert_forward

__all__ = ["bert_forward", "dropout"]
