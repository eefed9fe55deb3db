"""loralab's Hydra sweepers; Hydra finds them because `hydra_plugins` is a namespace package.

- `hydra/sweeper=points` (`PointsSweeper`): named points (full fine-tuning, LoRA r=8, ...)
  times the command-line grid, so one `-m` command puts every variant in one sweep folder.
- `hydra/sweeper=loralab_optuna` (`LoralabOptunaSweeper`): the Optuna sweeper, except that a
  failed trial (a run returning NaN) is recorded as failed and the search goes on.
"""
