"""The Optuna sweeper, with failed runs told to Optuna as failed trials.

loralab's entry points return NaN for a run that crashed in a sweep (and record it in the
run's summary.json). hydra-optuna-sweeper 1.3 hands that NaN to `study.tell`, which rejects
it, and then rejects the failure it tries to record instead: the whole search stops. Here
the NaN is turned into a failed job first, so Optuna marks the trial FAIL, its sampler
ignores it, and the search goes on (with `max_failure_rate: 1.0`, as `hparams_search`
configs set it).
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

from loralab import compat

log = logging.getLogger(__name__)


class FailedRunError(RuntimeError):
    """A run that returned NaN: it crashed, and its summary.json says why."""


@dataclass
class LoralabOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.loralab_sweeper.optuna_sweeper.LoralabOptunaSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="loralab_optuna",
    node=LoralabOptunaSweeperConf,
    provider="loralab",
)


def mark_nan_as_failed(returns: Sequence[JobReturn]) -> Sequence[JobReturn]:
    """Turn completed jobs that returned NaN into failed jobs, in place."""
    for job in returns:
        value = compat.job_return_value(job)
        if job.status == JobStatus.COMPLETED and isinstance(value, float) and math.isnan(value):
            hydra_cfg = job.hydra_cfg
            run_dir = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir") if hydra_cfg else None
            job.status = JobStatus.FAILED
            compat.set_job_return_value(
                job,
                FailedRunError(
                    f"the run in {run_dir or job.working_dir} failed; its summary.json holds "
                    "the error"
                ),
            )
    return returns


class _NanAsFailureLauncher:
    """Wraps the configured launcher (basic, joblib, ...) and marks NaN returns as failed."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        return mark_nan_as_failed(self.launcher.launch(job_overrides, initial_job_idx))


class LoralabOptunaSweeper(OptunaSweeper):
    def sweep(self, arguments: list[str]) -> None:
        """The search; when no trial completed, Optuna has no best trial to save, and the
        sweep ends without one (loralab.run.cli.FailedSweepExit then exits with code 1)."""
        try:
            return super().sweep(arguments)
        except ValueError as error:
            if "No trials are completed yet" not in str(error):
                raise
            log.error("no trial of the search completed: there is no best value to save")
            return None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweeper.launcher = _NanAsFailureLauncher(self.sweeper.launcher)
