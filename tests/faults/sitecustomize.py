"""Fault injection for the tests: wraps one function of a stage inside the ranks that torchrun starts.

Tests put this folder first on PYTHONPATH, so Python imports this module at start-up in every process; it acts
only in a torchrun worker (RANK is set) of the stage that `target` belongs to (`python -m edit_stage` for
`edit_stage.*`), and only when EDIT_BENCH_FAULT names a fault, e.g.

    EDIT_BENCH_FAULT='{"target": "edit_stage.pipeline:edit_sample", "rank": 1, "call": 3, "action": "kill"}'

On that rank, the wrapper counts calls of `target` and, on call number `call` (1-based):
- "kill": sends SIGKILL to its own process: a real kill -9, no handler, `finally` or flush runs;
- "raise": raises RuntimeError("injected fault ...");
- "delay": sleeps `seconds`, then makes the call (a rank slow once);
- "slow": sleeps `seconds` before every call, whatever `call` says (a slow GPU, all along).
A target outside the stage's package names the stage with "stage", e.g. "stage": "score_stage".
With "action": "oom" it instead raises torch.OutOfMemoryError on every call whose argument number `batch_arg`
(0-based, `self` included for a method) holds more than `max_batch` items, on the given rank, like a GPU that
fits only `max_batch` samples.
"""

import importlib
import json
import os
import signal
import sys
import time

_SPEC = os.environ.get("EDIT_BENCH_FAULT")


def _install(spec: dict) -> None:
    module_name, path = spec["target"].split(":")
    *owners, name = path.split(".")            # "score_stage.judges.in_process:InProcessJudge.ask" wraps a method
    owner = importlib.import_module(module_name)
    for attribute in owners:
        owner = getattr(owner, attribute)
    original = getattr(owner, name)
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if spec["action"] == "slow":
            time.sleep(spec["seconds"])
        elif spec["action"] == "oom":
            import torch

            if len(args[spec["batch_arg"]]) > spec["max_batch"]:
                raise torch.OutOfMemoryError(f"injected: CUDA out of memory for {len(args[spec['batch_arg']])}")
        elif calls == spec["call"]:
            if spec["action"] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if spec["action"] == "delay":
                time.sleep(spec["seconds"])
            else:
                raise RuntimeError(f"injected fault in {spec['target']} on rank {os.environ['RANK']}, call {calls}")
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


if _SPEC and "RANK" in os.environ:
    _spec = json.loads(_SPEC)
    _stage = _spec.get("stage", _spec["target"].split(".")[0])
    _argv = sys.orig_argv  # torchrun starts workers as `python -u -m <module> ...`
    _module = _argv[_argv.index("-m") + 1] if "-m" in _argv else None
    if int(os.environ["RANK"]) == _spec["rank"] and _module == _stage:
        _install(_spec)
