"""Inside a ticket: where IMP prunes, how tickets overlap, and what the surviving attention does.

    sparsity.py   each mask's sparsity per layer and per matrix (Q, K, V, attention output, feed-forward, pooler)
    overlap.py    the weights two masks both prune, the Jaccard index and its exact value for random masks
    attention.py  each head's attention probabilities, and over a dataset how much they changed
    runs.py       the masks of a run folder or a mask file, and a round's model fine-tuned again
    study.py      all of it for run folders and mask files: figures and anatomy.json (python -m minilth.inside_ticket)
    figures.py    heatmaps with their numbers, saved as PNG and SVG with the same bytes every time

Nothing in the core imports this package: it reads masks, run folders and models, and changes none of them.
"""
from .attention import (attention_maps, attention_measures, entropy_bits, js_divergence_bits, plot_attention_maps,
                        plot_head_measure)
from .overlap import (chance_jaccard, format_overlap, only_in, overlap, overlap_by_part, overlap_matrix, plot_overlap,
                      plot_overlap_by_part)
from .runs import Ticket, finetuned_model, oneshot, read_ticket
from .sparsity import MATRICES, format_sparsity, locate, plot_sparsity, sparsity_table
from .study import (InsideSettings, attention_study, changed_heads, example_maps, head_mean, look_inside,
                    sign_over_seeds, summary_lines)

__all__ = ["InsideSettings", "MATRICES", "Ticket", "attention_maps", "attention_measures", "attention_study",
           "chance_jaccard", "changed_heads", "entropy_bits", "example_maps", "finetuned_model", "format_overlap",
           "format_sparsity", "head_mean", "js_divergence_bits", "locate", "look_inside", "oneshot", "only_in",
           "overlap", "overlap_by_part", "overlap_matrix", "plot_attention_maps", "plot_head_measure",
           "plot_overlap", "plot_overlap_by_part", "plot_sparsity", "read_ticket", "sign_over_seeds",
           "sparsity_table", "summary_lines"]
