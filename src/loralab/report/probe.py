"""The interleaved probe: every point's training step, timed in turns in one process.

The runs of a sweep run one after another, each timed while the machine does whatever it
does then; on a shared machine a run that met a busy minute looks slow, and a speed ranking
built from those numbers can come out backwards. The probe rebuilds each point's run from
its stored config (`run.builder.build_run`), takes one batch of its training data, and
times its training step (forward, backward, optimizer step) round-robin: a few steps of
every point, then again, for a few rounds. A slow spell then hits every point alike. Each
point's figure is its fastest step: other processes can only make a step slower, never
faster, so on a busy machine the fastest of many interleaved steps is the step's own cost
(the median is given beside it, and on a quiet machine the two agree).

The timed rounds fit a time budget (`BUDGET_S`): where 7 rounds of 4 steps of every point
would take longer (a sweep of a 135M LLM: ~3 s a step), a round times fewer steps, then
there are fewer rounds, never under 3 rounds of one step; the schedule used is recorded.

It also counts each point's step memory exactly (weights, gradients, optimizer state and
saved activations; `measure_step_memory`), which a process's resident memory cannot tell.
This is the `make bench` method (scripts/bench.py) applied to the points of a sweep.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from loralab.errors import MissingFileError, user_error_in
from loralab.measure.step import StepMemory, measure_step_memory
from loralab.run.builder import Run, build_run, read_checkpoint, run_config_of
from loralab.tasks.optim import scaled_optimizer, trainable_parameters

log = logging.getLogger(__name__)

ROUNDS = 7
STEPS_PER_ROUND = 4
MIN_ROUNDS = 3
# seconds the timed rounds may take, all points together (warmup and memory steps aside)
BUDGET_S = 60.0
WARMUP_STEPS = 2
CHECKPOINTS = ("best.ckpt", "last.ckpt")
HYDRA_CONFIG = Path(".hydra") / "config.yaml"


@dataclass
class StepProbe:
    """One point's training step as the probe measured it."""

    step_ms: float  # the fastest timed step: the step's own cost, whatever the machine's load
    median_ms: float  # the median of all timed steps
    rounds_ms: list[float]  # each round's median step
    # bytes alive at the step's peak: weights, gradients, optimizer state, saved activations
    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    batch_shape: list[int]
    device: str

    @property
    def memory_bytes(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepProbe:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def run_config(run_dir: str | Path) -> DictConfig:
    """A run's resolved config: the one inside its checkpoint, else Hydra's record of it."""
    run_dir = Path(run_dir)
    for name in CHECKPOINTS:
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return run_config_of(read_checkpoint(path), path)
    recorded = run_dir / HYDRA_CONFIG
    if not recorded.is_file():
        raise MissingFileError(
            f"{run_dir} holds no checkpoint and no {HYDRA_CONFIG}, so its run cannot be "
            "rebuilt; probe a folder that `python -m loralab.train -m` wrote."
        )
    cfg = OmegaConf.load(recorded)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)  # Hydra's resolver for it exists only in a job
    return cfg


def probe_device(cfg: DictConfig) -> torch.device:
    """The device the run trained on: a GPU if it asked for one and there is one."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    wants_gpu = accelerator in ("gpu", "cuda", "auto")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


# trainer.precision values that train under autocast, and its dtype (Lightning's meaning)
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def run_autocast(cfg: DictConfig, device: torch.device) -> AbstractContextManager[Any]:
    """The autocast the run trained under (trainer.precision=bf16-mixed: bfloat16 matmuls),
    so the probe times the step the run took; none for 32-true."""
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    dtype = AUTOCAST.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


class TrainingStep:
    """One optimizer step of a built run on one fixed batch of its training data."""

    def __init__(self, run: Run, device: torch.device) -> None:
        run.datamodule.setup("fit")
        batch = next(iter(run.datamodule.train_dataloader()))
        self.task = run.task.to(device)
        self.task.train()
        self.batch = self.task.transfer_batch_to_device(batch, device, 0)
        self.device = device
        self.cfg = run.cfg
        # the run's own optimizer (AdamW, fused or not, parameter groups); no schedule needed
        self.optimizer = scaled_optimizer(
            self.task.optimizer_factory, trainable_parameters(self.task)
        )

    def loss(self, task: torch.nn.Module) -> torch.Tensor:
        with warnings.catch_warnings(), run_autocast(self.cfg, self.device):
            # training_step logs through self.log, which needs a Trainer; without one it warns
            warnings.simplefilter("ignore")
            return task.training_step(self.batch, 0)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(self.task).backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@dataclass(frozen=True)
class Schedule:
    """How many rounds the probe times, and how many steps of each point a round holds."""

    rounds: int = ROUNDS
    steps_per_round: int = STEPS_PER_ROUND

    def fitted(self, round_s: float, budget_s: float | None) -> Schedule:
        """This schedule cut to `budget_s` seconds, where one step of every point takes
        `round_s`: fewer steps per round first, then fewer rounds, down to MIN_ROUNDS x 1."""
        if budget_s is None or self.rounds * self.steps_per_round * round_s <= budget_s:
            return self
        per_round = int(budget_s // (self.rounds * round_s))
        if per_round >= 1:
            return Schedule(self.rounds, min(per_round, self.steps_per_round))
        fewest = min(MIN_ROUNDS, self.rounds)
        return Schedule(min(self.rounds, max(fewest, int(budget_s // round_s))), 1)


@dataclass
class ProbeResult:
    """Every probed point's step, the points that could not be rebuilt, and the schedule."""

    results: dict[str, StepProbe]
    errors: dict[str, str]
    schedule: Schedule


def timed_rounds(
    steps: Mapping[str, Callable[[], None]], rounds: int, steps_per_round: int
) -> dict[str, list[list[float]]]:
    """Every contender's step times (s), `steps_per_round` at its turn, round after round."""
    times: dict[str, list[list[float]]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            samples = []
            for _ in range(steps_per_round):
                start = time.perf_counter()
                step()
                samples.append(time.perf_counter() - start)
            times[name].append(samples)
    return times


def error_sentence(error: BaseException) -> str:
    """The one line that says why: the user error inside Hydra's wrapping, if there is one."""
    shown = user_error_in(error) or error
    return f"{type(shown).__name__}: {shown}".splitlines()[0][:240]


def probe(
    configs: Mapping[str, DictConfig],
    schedule: Schedule = Schedule(),
    budget_s: float | None = BUDGET_S,
) -> ProbeResult:
    """Each named run config's step time (interleaved) and step memory; and what failed.

    The schedule is cut to `budget_s` seconds of timed steps (None: no limit), judged by
    each point's last warmup step.
    """
    steps: dict[str, TrainingStep] = {}
    memories: dict[str, StepMemory] = {}
    errors: dict[str, str] = {}
    warm_s: dict[str, float] = {}
    for name, cfg in configs.items():
        try:
            torch.manual_seed(int(cfg.get("seed") or 0))
            step = TrainingStep(build_run(cfg), probe_device(cfg))
            # on a copy of the untouched task (a stepped one holds metric states with graphs)
            memories[name] = measure_step_memory(step.task, step.loss)
            for _ in range(WARMUP_STEPS):
                start = time.perf_counter()
                step()
                warm_s[name] = time.perf_counter() - start
            steps[name] = step
        except Exception as error:  # noqa: BLE001 - one point that cannot be rebuilt is reported
            errors[name] = error_sentence(error)
            log.warning("the probe skips %s: %s", name, errors[name])
    schedule = schedule.fitted(sum(warm_s[name] for name in steps), budget_s)
    if steps:
        log.info(
            "probe: %d rounds of %d steps of %d points",
            schedule.rounds,
            schedule.steps_per_round,
            len(steps),
        )
    times = timed_rounds(steps, schedule.rounds, schedule.steps_per_round)
    results = {}
    for name, step in steps.items():
        memory = memories[name]
        every = [t for round_times in times[name] for t in round_times]
        results[name] = StepProbe(
            step_ms=1000 * min(every),
            median_ms=1000 * statistics.median(every),
            rounds_ms=[1000 * statistics.median(r) for r in times[name]],
            parameters=memory.parameters,
            gradients=memory.gradients,
            optimizer_state=memory.optimizer_state,
            activations=memory.activations,
            batch_shape=list(step.batch["input_ids"].shape),
            device=str(step.device),
        )
    return ProbeResult(results, errors, schedule)
