"""The course on lottery tickets (course/ at the repository's top): the checks that grade its labs, and the grading of
a whole lab notebook.

    from minilth.course import check        # in a lab: check.magnitude_prune(magnitude_prune)
    python -m minilth.grade course/lab03_pruning_and_rewinding.ipynb --report report.json
"""
from . import check

__all__ = ["check"]
