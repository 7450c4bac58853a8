"""The course on lottery tickets (course/ at the repository's top): its exercises, their checks and the grading.

    from minilth.course import check        # in a lab: check.magnitude_prune(magnitude_prune), one line back
    python -m minilth.grade course/lab03_pruning_and_rewinding.ipynb --report report.json

exercise.py is what an exercise is (its calls, what is read back, its judge); exercises/ holds each lab's;
check.py runs them in a notebook, for feedback; isolation.py runs them for a grade, the student's code in a process
apart, and says what that guarantees; grading.py grades a notebook and writes the labs' copies; solutions.py is the
teacher's.
"""
from . import check

__all__ = ["check"]
