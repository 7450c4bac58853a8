"""The same BERT, computed faster: the layouts and kernels that model.py's forwards branch to.

    model.config.execution = "textbook"   # every padded position, attention by its formula
    model.config.execution = "padded"     # the fused attention kernel, the [CLS]-only last layer
    model.config.execution = "unpadded"   # and only the real tokens (the default)

Nothing here changes a number a real token gets (tests/test_fast.py); benchmarks/ measures the gain.
"""
from .dropout import dropout_multiplier
from .tokens import PackedTokens, PaddedTokens, Tokens, token_layout

__all__ = ["PackedTokens", "PaddedTokens", "Tokens", "dropout_multiplier", "token_layout"]
