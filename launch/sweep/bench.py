"""Time a sweep of N LoRA checkpoints against N separate launches of the same checkpoints, side by side in one run.

    python3 -m launch.sweep.bench --config configs/demo.yaml --checkpoints 3 --limit 4 --json sweep-bench.json

Both sides edit and judge the same samples with the same adapters, unfused (as a sweep runs them); the sweep loads
the editor and the judge once per rank and swaps adapters, each separate launch loads both again. Random tiny
adapters are made for the config's editor first (in the edit environment, `edit_stage.tiny --lora-for`), so the
config must name a local pipeline folder (the demo's tiny one, or a real checkpoint on a GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

from launch.envs import prepare_environments
from shards.config import REPO_ROOT, load_config, to_dict


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m launch.sweep.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="run config whose editor the adapters are made for")
    parser.add_argument("--checkpoints", type=int, default=3, help="LoRA checkpoints (default 3)")
    parser.add_argument("--limit", type=int, default=4, help="samples per checkpoint (default 4)")
    parser.add_argument("--work-dir", help="where adapters, configs and runs go (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def launch(config: str, out: str, limit: int) -> float:
    """One launch, to the end; its wall seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "launch", "--config", config, "--output-dir", out,
                           "--limit", str(limit)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    if done.returncode != 0:
        raise SystemExit(f"launch of {config} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def write(data: dict, path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, allow_unicode=True, sort_keys=False)
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_config(args.config)
    edit_python = prepare_environments(config)["edit"]
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        data = to_dict(config)
        data.pop("source")
        adapters = []
        for i in range(args.checkpoints):
            folder = os.path.join(work, "ckpt", f"step-{(i + 1) * 100}")
            subprocess.run([edit_python, "-m", "edit_stage.tiny", "--output", folder, "--lora-for", config.edit.model,
                            "--seed", str(i + 1)], cwd=REPO_ROOT, check=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": REPO_ROOT})
            adapters.append(folder)
        swept = write({**data, "sweep": {"base": None, "checkpoints": [{"lora": a} for a in adapters]}},
                      os.path.join(work, "sweep.yaml"))
        sweep_s = launch(swept, os.path.join(work, "sweep"), args.limit)
        single_s = []
        for adapter in adapters:
            single = {**data, "edit": {**data["edit"], "fuse_lora": False,
                                       "lora": [*data["edit"]["lora"], {"path": adapter, "scale": 1.0}]}}
            path = write(single, os.path.join(work, f"{os.path.basename(adapter)}.yaml"))
            single_s.append(launch(path, os.path.join(work, "single-" + os.path.basename(adapter)), args.limit))
    figures = {"command": "python3 -m launch.sweep.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
               "device": config.distributed.device, "ranks": config.distributed.nproc_per_node,
               "checkpoints": args.checkpoints, "samples_per_checkpoint": args.limit,
               "sweep_s": round(sweep_s, 1), "separate_launches_s": [round(s, 1) for s in single_s],
               "separate_total_s": round(sum(single_s), 1), "speedup": round(sum(single_s) / sweep_s, 2)}
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
