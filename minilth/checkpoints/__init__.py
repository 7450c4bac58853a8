"""Pre-trained weights in and out: finding, downloading and reading checkpoints, their configs, the tokenizer.

    from minilth.checkpoints import from_pretrained, load_tokenizer
    model = from_pretrained("all-MiniLM-L6-v2", head="regression")   # installed, cached, or downloaded once
    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
"""
from .configs import preset_config, read_config
from .masks import load_mask, save_mask
from .pretrained import from_pretrained, load_tokenizer, resolve_checkpoint, save_pretrained

__all__ = ["from_pretrained", "load_mask", "load_tokenizer", "preset_config", "read_config", "resolve_checkpoint",
           "save_mask", "save_pretrained"]
