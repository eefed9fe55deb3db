"""Hydra's joblib launcher with every run in a process of its own: a killed run dies alone.

The joblib launcher runs each job inside a loky worker. When one worker is killed (SIGKILL,
the kernel's OOM killer, a preempting scheduler), loky declares its pool broken and
terminates every other worker: one killed run ended the whole sweep. Here joblib's threads
only start and wait: each job runs in a fresh process (`spawn`), so a killed run takes no
other run with it. It is recorded as failed (a summary.json naming the signal and the
`ckpt_path=last` command that resumes it; its checkpoints stay), it returns NaN like any
failed run (the sweep goes on, an Optuna search marks the trial failed), and the other runs
complete. `hydra/launcher=joblib` selects it (configs/hydra/launcher/joblib.yaml replaces the
plugin's config of that name), with `hydra.launcher.n_jobs` runs at a time, each with its
share of the CPUs as torch threads.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from joblib import Parallel, delayed
from omegaconf import OmegaConf, open_dict

from loralab import compat
from loralab.io import to_plain
from loralab.run.cli import completed_summary_in
from loralab.run.summary import RunSummary

log = logging.getLogger(__name__)


def threads_per_job(n_jobs: int) -> int:
    """torch threads for each of `n_jobs` runs at a time: the CPUs this process may use,
    shared out among them (at least one; n_jobs -1 is one run per CPU).

    Two runs with one thread each beat two runs contending for every thread (their OpenMP
    threads would spin against each other). On 2 cores a SmolLM2 LoRA q,v step of `make llm`
    (bf16 autocast) takes 1.43 s in each of two runs side by side with 1 thread; one run alone
    takes 1.19 s with 1 thread and 0.68 s with 2, so two at a time give about the throughput
    of one after the other, and more where a run's evaluation uses threads less well.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 1 if n_jobs < 1 else max(1, (cpus or 1) // n_jobs)


def run_job_here(result: Connection, payload: bytes, threads: int) -> None:
    """In the run's own process: run the Hydra job with `threads` torch threads, send back
    its JobReturn."""
    import torch

    torch.set_num_threads(threads)
    job = compat.joblib_execute_job()(*cloudpickle.loads(payload))
    result.send_bytes(cloudpickle.dumps(job))
    result.close()


def killed_by(exitcode: int | None) -> str:
    """SIGKILL for exit code -9, and so on."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            pass
    return f"exit code {exitcode}"


class IsolatedJoblibLauncher(JoblibLauncher):
    """`JoblibLauncher` whose jobs each run in a spawned process; joblib threads wait on them."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        n_jobs = self.joblib.get("n_jobs", -1)
        self.threads = threads_per_job(n_jobs)
        log.info(
            "launching %d jobs, %s at a time, each in its own process with %d torch threads, "
            "into %s",
            len(job_overrides),
            n_jobs,
            self.threads,
            sweep_dir,
        )
        singleton_state = Singleton.get_state()
        jobs = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            payload = (
                idx,
                overrides,
                self.hydra_context,
                self.config,
                self.task_function,
                singleton_state,
            )
            jobs.append((idx, list(overrides), cloudpickle.dumps(payload)))
        # threads, not loky workers: a thread only waits, and a killed run is a child of none
        parallel = Parallel(
            n_jobs=n_jobs, backend="threading", verbose=self.joblib.get("verbose", 0)
        )
        return parallel(delayed(self.run_isolated)(*job) for job in jobs)

    def run_isolated(self, idx: int, overrides: list[str], payload: bytes) -> JobReturn:
        """Run one job in a fresh process; a killed process becomes a failed (NaN) run."""
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=run_job_here, args=(send, payload, self.threads))
        process.start()
        send.close()
        try:
            data = receive.recv_bytes()
        except EOFError:  # the process died before it could answer
            data = None
        process.join()
        if data is not None:
            return cloudpickle.loads(data)
        return self.killed_job(idx, overrides, killed_by(process.exitcode))

    def killed_job(self, idx: int, overrides: list[str], how: str) -> JobReturn:
        """The JobReturn of a run that was killed, after recording it in its folder."""
        assert self.config is not None and self.hydra_context is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            cfg.hydra.job.num = idx
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
        run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        message = (
            f"the run was killed ({how}); its checkpoints stay in {run_dir}/checkpoints: resume it "
            f"with its overrides and ckpt_path=last hydra.run.dir={run_dir}"
        )
        log.error("run %d (%s) failed, the sweep goes on: %s", idx, " ".join(overrides), message)
        if "adapter" in cfg and not completed_summary_in(run_dir):
            RunSummary.failed(
                adapter=to_plain(cfg.adapter),
                run_name=OmegaConf.select(cfg, "run_name", default=None),
                seed=OmegaConf.select(cfg, "seed", default=None),
                error=f"RunKilled: {message}",
            ).write(run_dir)
        job = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=math.nan)
        job.working_dir = str(run_dir)
        return job
