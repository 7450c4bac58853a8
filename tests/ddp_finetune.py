"""Run by tests/test_distributed.py under torchrun: one tiny fine-tuning, rank 0 saves the weights it ends with.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_finetune.py CHECKPOINT GLUE OUT
"""
import sys

import torch

from minilth.scale import distributed
from minilth.data.folders import load_dataset
from minilth.data.tasks import get_task
from minilth.train import finetune, model_for_task
from minilth.checkpoints.pretrained import load_tokenizer


def main(checkpoint: str, glue_dir: str, out: str, task_name: str = "rte") -> None:
    distributed.start("cpu")
    task = get_task(task_name)
    tokenizer = load_tokenizer(checkpoint)
    train = load_dataset(task, glue_dir, "train", tokenizer, max_examples=40)
    model = model_for_task(checkpoint, task, seed=0)
    history = finetune(model, task, train, None, epochs=2, batch_size=8, learning_rate=1e-3, seed=0,
                       device="cpu", progress=False)
    if distributed.is_writer():
        torch.save({"state": model.state_dict(), "losses": history.losses}, out)
    distributed.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
