"""The tasks of the paper and their data: one table of tasks, the readers, batches, metrics and the files' sources.

    from minilth.data import get_task, load_dataset
    task = get_task("stsb")
    train = load_dataset(task, None, "train", tokenizer)   # $MINILTH_DATA_DIR, else data/glue; downloaded if missing

text files -> reader (glue.py, squad.py, mlm.py) -> examples -> tokenizer -> features -> batches
(batches.py, dynamic padding) -> model -> predictions -> metrics (metrics.py, squad.py, mlm.py).
"""
from .folders import load_dataset, resolve_data_dir
from .tasks import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task", "load_dataset", "resolve_data_dir"]
