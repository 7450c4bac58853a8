"""More than one process: data-parallel fine-tuning under torchrun (distributed.py), and the paper's grid as
jobs that shells or a SLURM array share (grid.py)."""
