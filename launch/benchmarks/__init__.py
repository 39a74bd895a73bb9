"""Public benchmarks as they ship, turned into this tool's dataset in one command:

    python3 -m launch import-benchmark NAME SOURCE --output DIR

NAME is `gedit`, `risebench`, `kris` or `imgedit`; SOURCE the local copy a user downloaded. It writes
`DIR/benchmark.jsonl` and the images beside it (copied as they are; GEdit-Bench's embedded images written as their
bytes), each sample with its source's id, category and the fields that matter under its own keys. The source is
checked whole first, every problem named; nothing is written until it checks out. `configs/<NAME>.yaml` runs the
result. GEdit-Bench's parquet needs pyarrow: the launcher runs that import in the judge's environment.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

from launch.benchmarks.common import BenchmarkError, Reading, check_rows, refuse, write_dataset

NAMES = ("gedit", "risebench", "kris", "imgedit")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m launch import-benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=NAMES, help="which benchmark SOURCE is a copy of")
    parser.add_argument("source", help="the benchmark's local copy, as downloaded (a folder; for gedit also a "
                                       "parquet file)")
    parser.add_argument("--output", required=True, help="folder to write benchmark.jsonl and images/ into")
    parser.add_argument("--images", help="imgedit: the folder of the original images, if not under SOURCE")
    parser.add_argument("--allow-missing-images", action="store_true",
                        help="keep a sample whose image file is missing (run it with dataset.skip_unreadable_images: "
                             "true, which records it as failed) instead of refusing the source")
    parser.add_argument("--config", default=None,
                        help="gedit: the config whose judge environment reads the parquet (default: "
                             "configs/gedit.yaml)")
    return parser.parse_args(argv)


def read(name: str, source: str, images: str | None = None) -> Reading:
    module = importlib.import_module(f"launch.benchmarks.{name}")
    return module.read(source, images) if name == "imgedit" else module.read(source)


def import_benchmark(name: str, source: str, output: str, images: str | None = None,
                     allow_missing_images: bool = False) -> tuple[str, Reading]:
    """Read, check and write; returns the dataset's path and what was read.

    Raises:
        BenchmarkError: naming every problem of the source; nothing is written then.
    """
    if not os.path.exists(source):
        raise BenchmarkError(f"{source}: no such file or folder")
    reading = read(name, source, images)
    if not reading.rows and not reading.problems:
        reading.problems.append("no samples found")
    refuse(reading.problems + check_rows(reading.rows, allow_missing_images), source)
    return write_dataset(reading.rows, output), reading


def main(argv: list[str]) -> int:
    """`import-benchmark`'s arguments (after the subcommand); returns the exit status."""
    args = parse_args(argv)
    if args.name == "gedit" and not _has_pyarrow():
        return _in_judge_environment(args, argv)
    try:
        path, reading = import_benchmark(args.name, os.path.abspath(args.source), os.path.abspath(args.output),
                                         args.images, args.allow_missing_images)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    for note in reading.notes:
        print(f"[import] {note}", flush=True)
    categories = sorted({row.category for row in reading.rows})
    print(f"[import] {args.name}: {len(reading.rows)} samples in {len(categories)} categories -> {path}", flush=True)
    print(f"[import] run it: python3 -m launch --config configs/{args.name}.yaml --set dataset.path={path}",
          flush=True)
    return 0


def _has_pyarrow() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _in_judge_environment(args: argparse.Namespace, argv: list[str]) -> int:
    """Run this same import with the judge environment's interpreter (found or built), which has pyarrow."""
    from launch.cli import prepare_environments
    from launch.envs import EnvError
    from shards.config import REPO_ROOT, ConfigError, load_config

    config = args.config or os.path.join(REPO_ROOT, "configs", "gedit.yaml")
    try:
        python = prepare_environments(load_config(config), stages=("score",))["score"]
    except (ConfigError, EnvError) as e:
        print(f"error: reading GEdit-Bench's parquet needs the judge environment: {e}", file=sys.stderr)
        return 2
    print(f"[import] reading parquet with the judge environment's {python}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([python, "-m", "launch", "import-benchmark", *argv], env=env).returncode
