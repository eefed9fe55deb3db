"""DDP and FSDP under Hydra: every process of a run works in the one run folder.

Lightning starts the processes of a DDP/FSDP run on one node by re-running the command
line once per extra device (`LOCAL_RANK=1 python -m loralab.train ...`). Under Hydra it
appends `hydra.run.dir=<the run dir>`, which works for a single run but not for a sweep:
the re-run command still holds `-m` and the sweep lists, so every extra process starts a
sweep of its own in a new multirun folder. `HydraDDPStrategy` and `HydraFSDPStrategy`
instead start each extra process as a *single run* of exactly this job: the job's own
overrides (one point of the sweep), in this job's output folder, without writing Hydra's
.hydra/ files again. Where a cluster starts the processes itself (SLURM's srun, torchrun),
Lightning launches nothing and these strategies behave like their parents.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from omegaconf import DictConfig
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from loralab import compat
from loralab.errors import ConfigError


def entry_module() -> str:
    """The `python -m` module this process runs (loralab.train, loralab.eval, ...)."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    name = spec.name if spec is not None else ""
    if not name or name.startswith("submitit"):
        raise ConfigError(
            "trainer.devices > 1 needs the run started as `python -m loralab.train` (or under "
            "SLURM, which starts one process per device); with hydra/launcher=submitit_local "
            "use trainer=cpu or trainer=gpu."
        )
    return name


def child_command(local_rank: int) -> tuple[list[str], str | None]:
    """The command line (and working dir) of the process with this local rank."""
    if not HydraConfig.initialized():
        return compat.basic_subprocess_command(), None
    hydra_cfg = HydraConfig.get()
    command = [sys.executable, "-m", entry_module(), f"--config-name={hydra_cfg.job.config_name}"]
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "command-line":  # a --config-dir the user gave
            command.append(f"--config-dir={source.path.removeprefix('file://')}")
    command += list(hydra_cfg.overrides.task)  # this job's overrides: one point of a sweep
    command += [
        f"hydra.run.dir={hydra_cfg.runtime.output_dir}",
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
    ]
    return command, hydra_cfg.runtime.cwd


# variables the launcher sets in this process for its children (and for Lightning's ranks)
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# the per-device processes started for the current job, waited for when the job ends
_children: list[subprocess.Popen] = []


def block_wrap_policy(block_classes: Sequence[str]) -> ModuleWrapPolicy:
    """FSDP wraps each instance of these classes (dotted paths) as its own shard unit."""
    return ModuleWrapPolicy({hydra.utils.get_class(path) for path in block_classes})


class HydraJobLauncher(compat.SubprocessScriptLauncher):
    """Lightning's per-device process launcher, with the command from `child_command`."""

    def _call_children_scripts(self) -> None:  # a private hook (see compat)
        compat.check_can_spawn_children(self)
        self.procs = []
        env = self.cluster_environment
        # the rendezvous every process reads (what torch.distributed's env:// init expects)
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        for local_rank in range(1, self.num_processes):
            command, cwd = child_command(local_rank)
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))
        _children.extend(self.procs)


class EndDistributedJob(HydraCallback):
    """Hydra callback: after a job that launched DDP processes, leave a clean process behind.

    Lightning keeps the process group and the rendezvous variables alive after `fit`/`test`
    (the extra processes serve both). In a sweep the next job runs in the same process: it
    would reuse the dead group, or take LOCAL_RANK as a sign that a cluster started it.
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _children:
            return  # this process launched nothing (a single-device run, or a rank > 0)
        for proc in _children:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        _children.clear()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name in RENDEZVOUS_VARS:
            os.environ.pop(name, None)


class HydraDDPStrategy(DDPStrategy):
    """`DDPStrategy` whose extra processes re-run this Hydra job, not the whole command."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if compat.uses_popen(self):  # when the cluster starts processes, it launches none
            compat.set_launcher(
                self, HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
            )


class HydraFSDPStrategy(FSDPStrategy):
    """`FSDPStrategy` whose extra processes re-run this Hydra job, not the whole command."""

    def setup_environment(self) -> None:
        self.check_device(self.root_device)
        super().setup_environment()

    @staticmethod
    def check_device(device: torch.device) -> None:
        """torch's first FSDP, which this strategy wraps, refuses CPU devices: say so first."""
        if device.type == "cpu":
            raise ConfigError(
                "trainer=fsdp with trainer.accelerator=cpu: torch's FSDP needs GPUs; on CPU use "
                "trainer=fsdp_sim (FSDP2's fully_shard over gloo processes)."
            )

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if compat.has_launcher(self):  # none where the cluster starts the processes
            compat.set_launcher(
                self, HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
            )


__all__: Sequence[str] = [
    "EndDistributedJob",
    "HydraDDPStrategy",
    "HydraFSDPStrategy",
    "block_wrap_policy",
    "child_command",
]
