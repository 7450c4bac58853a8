"""The course's exercises, lab by lab: the grader's list of what each lab holds (a student's copy cannot change it).

    LABS["lab03"]                # (MAGNITUDE_PRUNE, REWIND): the exercises of lab 03, in order
    EXERCISES["magnitude_prune"]  # one exercise by name
"""
from . import lab02, lab03, lab04, lab05, lab06, lab07

LABS = {"lab02": lab02.EXERCISES, "lab03": lab03.EXERCISES, "lab04": lab04.EXERCISES, "lab05": lab05.EXERCISES,
        "lab06": lab06.EXERCISES, "lab07": lab07.EXERCISES}
EXERCISES = {exercise.name: exercise for exercises in LABS.values() for exercise in exercises}
