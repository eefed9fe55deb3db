"""Run many `python -m <module> args...` commands from one interpreter that imports loralab once.

`python -m tests.fork_cli jobs.json results.json [parallel]`: each job (`{"id", "module",
"args"}`) runs in a child forked from this process, so it has its own process, exit code,
stdout and stderr exactly as when started from a shell, but skips the ~6 s that importing
torch, Lightning, transformers and Hydra costs every fresh interpreter on 2 cores. Results:
`{id: {"returncode", "stdout", "stderr"}}`. Not a test module; the fault-injection test uses it.

`python -m tests.fork_cli --serve module...`: the same, one command at a time for as long as
the test session lasts (`tests/conftest.py::run_cli`): each line on stdin is a job `{"module",
"args", "env", "cwd", "timeout"}`, answered by one line of `{"returncode", "stdout", "stderr"}`
once its child has exited; the server ends when its stdin closes.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import signal
import sys
import tempfile
import traceback
from pathlib import Path


def run_child(module: str, args: list[str], out: Path, err: Path) -> None:
    """In the forked child: stdout/stderr into files, run the module as __main__, exit."""
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    sys.argv = [module, *args]
    sys.modules.pop(module, None)  # run a fresh copy as __main__, as `python -m` does
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        if isinstance(exit_.code, int) or exit_.code is None:
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to `python -m`
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(jobs_path: str, results_path: str, parallel: int = 2) -> None:
    jobs = json.loads(Path(jobs_path).read_text())
    for module in sorted({job["module"] for job in jobs}):
        importlib.import_module(module)  # imported once, here; each child inherits it
    sys.stdout.flush()
    sys.stderr.flush()
    logs = Path(tempfile.mkdtemp(prefix="fork_cli_"))
    running: dict[int, dict] = {}
    codes: dict[str, int] = {}

    def reap() -> None:
        pid, status = os.wait()
        codes[running.pop(pid)["id"]] = os.waitstatus_to_exitcode(status)

    for job in jobs:
        while len(running) >= parallel:
            reap()
        out, err = logs / f"{job['id']}.out", logs / f"{job['id']}.err"
        pid = os.fork()
        if pid == 0:
            run_child(job["module"], job["args"], out, err)
        running[pid] = job
    while running:
        reap()
    results = {
        job["id"]: {
            "returncode": codes[job["id"]],
            "stdout": (logs / f"{job['id']}.out").read_text(errors="replace"),
            "stderr": (logs / f"{job['id']}.err").read_text(errors="replace"),
        }
        for job in jobs
    }
    Path(results_path).write_text(json.dumps(results))


def enter_job(job: dict) -> None:
    """In a served child: the job's own environment, folder, path and time limit, no stdin."""
    os.environ.clear()
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    sys.path[0] = job["cwd"]  # what `python -m` puts first: the folder it starts in
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    signal.alarm(int(job["timeout"]))  # SIGALRM ends the child, as a timeout would


def serve(modules: list[str]) -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what the imports print must not mix with the answers
    for module in modules:
        importlib.import_module(module)
    sys.stdout.flush()
    answers.write("ready\n")
    logs = Path(tempfile.mkdtemp(prefix="fork_cli_"))
    out, err = logs / "job.out", logs / "job.err"
    while line := sys.stdin.readline():
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            answers.close()
            enter_job(job)
            run_child(job["module"], job["args"], out, err)
        _, status = os.waitpid(pid, 0)
        answer = {
            "returncode": os.waitstatus_to_exitcode(status),
            "stdout": out.read_text(errors="replace"),
            "stderr": err.read_text(errors="replace"),
        }
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(sys.argv[2:])
    else:
        main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
