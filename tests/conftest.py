"""Shared fixtures: configs composed in-process, tiny runs, and one small pretrained backbone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from loralab.run.resolvers import config_dir, project_root

# Tiny data and one short epoch: enough to exercise every stage in a second or two.
TINY = [
    "data.n_train=256",
    "data.n_val=128",
    "data.n_test=128",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def compose_config(
    name: str, overrides: Sequence[str], output_dir: Path, log_dir: Path | None = None
) -> DictConfig:
    """Compose configs/<name>.yaml as the CLI would, with its outputs under a tmp folder."""
    paths = [f"paths.output_dir={output_dir}", f"paths.log_dir={log_dir or output_dir / 'logs'}"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=name, overrides=[*paths, *overrides])


@pytest.fixture
def train_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose('train') with TINY settings; extra overrides win. Each call gets its own run
    folder (run, run-2, ...): a fresh run refuses a folder that holds an earlier run."""
    calls = []

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        calls.append(None)
        folder = tmp_path / ("run" if len(calls) == 1 else f"run-{len(calls)}")
        return compose_config("train", [*(TINY if tiny else []), *overrides], folder)

    return make


def pretrain_backbone(out: Path, *overrides: str) -> Path:
    """Pretrain a backbone briefly on the majority-group task, as `make pretrain` does."""
    from loralab.train import train

    path = out / "tiny_encoder.safetensors"
    cfg = compose_config(
        "train",
        [
            "experiment=pretrain",
            "data.n_train=6000",
            "trainer.max_epochs=2",
            "logger=[]",
            "callbacks.progress_bar=null",
            "trainer.enable_progress_bar=false",
            f"save_backbone={path}",
            *overrides,
        ],
        out / "run",
    )
    train(cfg)
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def pretrained_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backbone of the default shape, pretrained briefly: weights to load, not a good model."""
    return pretrain_backbone(tmp_path_factory.mktemp("pretrain"))


def run_cli_many(
    commands: dict[str, tuple[str, list[str]]], work: Path, parallel: int = 2
) -> dict[str, subprocess.CompletedProcess]:
    """`python -m <module> args...` of each id, each its own process forked from one interpreter
    that imported loralab once (`tests/fork_cli.py`): the exit codes and output of separate
    commands, without paying the ~6 s start-up of torch and Lightning for every one."""
    work.mkdir(parents=True, exist_ok=True)
    jobs = [{"id": key, "module": module, "args": list(args)}
            for key, (module, args) in commands.items()]  # fmt: skip
    (work / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "LORALAB_ROOT": project_root(), "HYDRA_FULL_ERROR": "0"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    server = [sys.executable, "-m", "tests.fork_cli", str(work / "jobs.json"),
              str(work / "results.json"), str(parallel)]  # fmt: skip
    subprocess.run(server, cwd=project_root(), env=env, check=True, timeout=1200)
    results = json.loads((work / "results.json").read_text())
    return {
        key: subprocess.CompletedProcess(
            [sys.executable, "-m", module, *args],
            results[key]["returncode"],
            results[key]["stdout"],
            results[key]["stderr"],
        )  # fmt: skip
        for key, (module, args) in commands.items()
    }


# the commands `run_cli` serves from one interpreter that imported them once
SERVED = ("loralab.train", "loralab.eval", "loralab.merge", "loralab.export", "loralab.report",
          "loralab.generate")  # fmt: skip


class ForkServer:
    """`tests/fork_cli.py --serve`: started at the first `run_cli`, it forks a child per command
    (~6 s of imports saved each time). It serves only commands whose environment is the one it
    started with (anything read at import time is then the same); others get a fresh process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        command = [sys.executable, "-m", "tests.fork_cli", "--serve", *SERVED]
        self.proc = subprocess.Popen(command, cwd=project_root(), env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        self.alive = self.proc.stdout.readline() == "ready\n"

    def serves(self, module: str, env: dict[str, str]) -> bool:
        return self.alive and module in SERVED and same_env(env, self.env)

    def run(self, module: str, args: list[str], env: dict[str, str], cwd: Path, timeout: int):
        job = {"module": module, "args": args, "env": env, "cwd": str(cwd), "timeout": timeout}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:  # the server died: this command and the next get fresh processes
            self.alive = False
            return None
        answer = json.loads(line)
        return subprocess.CompletedProcess(
            [sys.executable, "-m", module, *args],
            answer["returncode"],
            answer["stdout"],
            answer["stderr"],
        )  # fmt: skip


# Variables read when used, not when imported: the test's name, and what runs in the test
# process leave behind (Lightning's seed and ranks, deterministic mode, torch.compile, OpenMP's
# and tokenizers' flags). The served child gets them from its job's environment like a fresh
# process. Any other variable that differs from the session's start (a test's
# monkeypatch.setenv of HF_HUB_OFFLINE, say) sends the command to a fresh process.
READ_WHEN_USED = ("PYTEST_", "PL_", "KMP_", "CUBLAS_", "TORCHINDUCTOR_", "_TORCHINDUCTOR_",
                  "TOKENIZERS_PARALLELISM", "PYTORCH_NVML_BASED_CUDA_CHECK", "MASTER_ADDR",
                  "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")  # fmt: skip


def same_env(a: dict[str, str], b: dict[str, str]) -> bool:
    """Equal in every variable an import could read."""

    def imported(env: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if not k.startswith(READ_WHEN_USED)}

    return imported(a) == imported(b)


_server: list[ForkServer] = []
SESSION_ENV = dict(os.environ)  # the environment the tests start in


def run_cli(module: str, *args: str, cwd: Path | None = None, check: bool = True):
    """Run `python -m <module> args...` as a user would; returns the CompletedProcess. The
    process is forked from a server that imported the module (same exit code and output as a
    fresh one), unless this test changed the environment."""
    fixed = {"LORALAB_ROOT": project_root(), "HYDRA_FULL_ERROR": "0"}
    env = {**os.environ, **fixed}
    if not _server:
        _server.append(ForkServer({**SESSION_ENV, **fixed}))
    proc = None
    if _server[0].serves(module, env):
        proc = _server[0].run(module, list(args), env, cwd or Path(project_root()), 600)
    if proc is None:
        proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or project_root(),
                              env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{module} {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc
