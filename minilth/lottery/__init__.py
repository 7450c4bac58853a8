"""Around the IMP loop: the run's folder, the plan, the verdict, the controls, transfer, and the tables and figures.

    run_folder.py     starting, resuming, checking and saving an IMP run's rounds
    plan.py           what a run will do, and how long it takes, from its own first steps
    verdict.py        is it a winning ticket, under both of the paper's definitions
    baselines.py      random pruning, random re-initialisation, standard pruning, one-shot
    mask_transfer.py  a mask moved to other tasks, the transfer matrix
    report.py         pure: rows in, text, CSV and figures out (Table 2, the heatmap, the sparsity curve)
"""
