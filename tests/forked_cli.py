"""Run many ``fhdr`` command lines, each in a child forked from one process that imported fhdr once.

A crash or a hang in one command cannot take the others (or pytest) down, and no command pays for the interpreter's
start. ``run_forked`` is the tests' entry; as a script: ``python forked_cli.py SECONDS < commands.json`` (a JSON
list of argument lists), printing one JSON line per command: ``args``, ``status`` (the exit code, minus the signal
that killed it, or ``"timeout"``), ``seconds`` and ``stderr``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_forked(commands: list[list[Any]], seconds: float) -> list[dict[str, Any]]:
    """Run each ``fhdr`` command line (arguments after ``fhdr``) with a time limit of ``seconds`` each."""
    args = [[str(a) for a in command] for command in commands]
    run = subprocess.run(
        [sys.executable, __file__, str(seconds)],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        timeout=seconds * len(args) + 120,
    )
    if run.returncode != 0:
        raise RuntimeError(f"forked_cli.py failed: {run.stderr}")
    return [json.loads(line) for line in run.stdout.splitlines()]


def _child(args: list[str], err_path: str) -> None:
    """In the child: ``fhdr ARGS`` with stderr to ``err_path``; never returns."""
    from fhdr_plugin.host.cli import main

    code = 3
    try:
        os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.argv = ["fhdr", *args]
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, seconds: float) -> int | str:
    """The child's exit code, minus the signal that killed it, or ``"timeout"`` (then it is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "timeout"


def _serve(seconds: float, commands: list[list[str]]) -> None:
    """Run each command in its own child, one at a time, and print what became of it."""
    import fhdr_plugin.host.cli
    import fhdr_plugin.host.pipeline  # noqa: F401  (imported once here rather than in every child)

    with tempfile.TemporaryDirectory() as tmp:
        for i, args in enumerate(commands):
            err_path = os.path.join(tmp, f"{i}.err")
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                _child(args, err_path)
            status = _wait(pid, seconds)
            stderr = Path(err_path).read_text(errors="replace") if os.path.exists(err_path) else ""
            record = {"args": args, "status": status, "seconds": time.monotonic() - start, "stderr": stderr}
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    _serve(float(sys.argv[1]), json.load(sys.stdin))
