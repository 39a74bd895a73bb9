"""Public benchmarks as they ship, turned into this tool's dataset in one command:

    python3 -m launch import-benchmark NAME SOURCE --output DIR

NAME is `gedit`, `risebench`, `kris` or `imgedit`; SOURCE the local copy a user downloaded. It writes
`DIR/benchmark.jsonl` and the images beside it (copied as they are; GEdit-Bench's embedded images written as their
bytes), each sample with its source's id, category and the fields that matter under its own keys. The source is
checked whole first, every problem named; nothing is written until it checks out: its fields and paths (a file
that leads outside the source, by a link, is refused), then every image, decoded as the dataset loader will decode
it (`shards.images`), so that an import that succeeds is a dataset the stages take. `configs/<NAME>.yaml` runs the
result. The benchmark's own judge prompts, which its `official` protocol judges with (`score.protocol`), are read
from the files that ship them in SOURCE (for gedit, from its scorer's checkout, given as SCORER) and written beside
the dataset as `judge_prompts.json` (`launch.importers.prompts`). Decoding needs Pillow and GEdit-Bench's parquet pyarrow, which the launcher's bare Python lacks: it checks
what it can itself (a wrong copy is named at once), then runs the import in the judge's environment (built first
if needed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

from launch.importers.common import (BenchmarkError, Reading, check_rows, image_problems, outside_problems, refuse,
                                     source_root, write_dataset)
from launch.importers.prompts import read_prompts, write_prompts
from shards.config_schema import REPO_ROOT
from shards.judge_prompts import judge_prompts_path

NAMES = ("gedit", "risebench", "kris", "imgedit")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m launch import-benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=NAMES, help="which benchmark SOURCE is a copy of")
    parser.add_argument("source", help="the benchmark's local copy, as downloaded (a folder; for gedit also a "
                                       "parquet file)")
    parser.add_argument("scorer", nargs="?", help="gedit: a checkout of its scorer's repository (stepfun-ai/"
                                                  "Step1X-Edit), whose GEdit-Bench/viescore/vie_prompts.py holds the "
                                                  "judge prompts of the official protocol")
    parser.add_argument("--output", required=True, help="folder to write benchmark.jsonl and images/ into")
    parser.add_argument("--images", help="imgedit: the folder of the original images, if not under SOURCE")
    parser.add_argument("--allow-missing-images", action="store_true",
                        help="keep a sample whose image file is missing (run it with dataset.skip_unreadable_images: "
                             "true, which records it as failed) instead of refusing the source")
    parser.add_argument("--config", default=None,
                        help="the config whose judge environment decodes the images and reads GEdit-Bench's "
                             "parquet, where this Python cannot (default: configs/NAME.yaml)")
    return parser.parse_intermixed_args(argv)      # SCORER may follow the options


def read(name: str, source: str, images: str | None = None) -> Reading:
    module = importlib.import_module(f"launch.importers.{name}")
    return module.read(source, images) if name == "imgedit" else module.read(source)


def import_benchmark(name: str, source: str, output: str, images: str | None = None,
                     allow_missing_images: bool = False, scorer: str | None = None) -> tuple[str, Reading]:
    """Read, check, decode every image and write the dataset and the judge prompts; returns the dataset's path and
    what was read.

    Raises:
        BenchmarkError: naming every problem of the source; nothing is written then.
    """
    reading = checked(name, source, images, allow_missing_images)
    prompts = judge_prompts(name, source, scorer, reading)
    # Decoding takes a while: it waits until the source's fields and paths check out.
    refuse(image_problems(reading.rows), source)
    path = write_dataset(reading.rows, output)
    if prompts is not None:
        reading.notes.append(f"{len(prompts.prompts)} judge prompts of the official protocol (sha256 "
                             f"{prompts.sha256[:12]}) -> {write_prompts(prompts, output)}")
    elif os.path.isfile(judge_prompts_path(path)):
        # An earlier import's prompts would be taken for this copy's by an official run: the dataset beside them
        # is this copy's now.
        os.remove(judge_prompts_path(path))
        reading.notes.append(f"removed {judge_prompts_path(path)}, an earlier import's judge prompts: this copy "
                             "ships none")
    return path, reading


def judge_prompts(name: str, source: str, scorer: str | None, reading: Reading):
    """The benchmark's own judge prompts from its copy (gedit: from `scorer`), or None with a note when the copy
    ships none (the open protocol needs none).

    Raises:
        BenchmarkError: a scorer given to another benchmark than gedit, or prompts not where the benchmark keeps
            them, naming the file and the names looked for.
    """
    if scorer is not None and name != "gedit":
        raise BenchmarkError(f"{scorer}: only gedit takes a second source (its scorer's checkout); {name}'s "
                             "prompts are read from its own copy")
    specs = importlib.import_module(f"launch.importers.{name}").PROMPTS
    where = scorer if name == "gedit" else source
    found = read_prompts(name, where, specs) if where else None
    if found is None and scorer is not None:
        raise BenchmarkError(f"{scorer}: no judge prompt file at {' or '.join(specs[0].places)} (looked for "
                             f"{', '.join(specs[0].names)})")
    if found is None:
        places = " or ".join(p for spec in specs for p in spec.places)
        reading.notes.append(f"no judge prompts ({places} not in {where or 'the sources'}"
                             f"{'; give the scorer checkout as a second source' if name == 'gedit' else ''}): the "
                             "open protocol runs; the official one needs them")
    return found


def checked(name: str, source: str, images: str | None, allow_missing_images: bool) -> Reading:
    """The source read, its fields, ids and paths checked (what the standard library can check).

    Raises:
        BenchmarkError: naming every problem found.
    """
    if not os.path.exists(source):
        raise BenchmarkError(f"{source}: no such file or folder")
    reading = read(name, source, images)
    if not reading.rows and not reading.problems:
        reading.problems.append("no samples found")
    roots = [source_root(folder) for folder in (source, images) if folder]
    refuse(reading.problems + check_rows(reading.rows, allow_missing_images) + outside_problems(reading.rows, roots),
           source)
    return reading


def main(argv: list[str]) -> int:
    """`import-benchmark`'s arguments (after the subcommand); returns the exit status."""
    args = parse_args(argv)
    source, output = os.path.abspath(args.source), os.path.abspath(args.output)
    images = args.images and os.path.abspath(args.images)
    try:
        missing = _missing_modules(args.name)
        if missing:
            if args.name != "gedit":        # a wrong copy is named now, not after an environment is built
                checked(args.name, source, images, args.allow_missing_images)
            return _in_judge_environment(args, argv, missing)
        scorer = args.scorer and os.path.abspath(args.scorer)
        path, reading = import_benchmark(args.name, source, output, images, args.allow_missing_images, scorer)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    for note in reading.notes:
        print(f"[import] {note}", flush=True)
    categories = sorted({row.category for row in reading.rows})
    print(f"[import] {args.name}: {len(reading.rows)} samples in {len(categories)} categories -> {path}", flush=True)
    print(f"[import] run it: python3 -m launch --config configs/{args.name}.yaml --set dataset.path={path}",
          flush=True)
    official = os.path.join("configs", f"{args.name}-official.yaml")
    if os.path.isfile(judge_prompts_path(path)) and os.path.isfile(os.path.join(REPO_ROOT, official)):
        print(f"[import] or under its official protocol: python3 -m launch --config {official} --set "
              f"dataset.path={path}", flush=True)
    return 0


def _missing_modules(name: str) -> list[str]:
    """What this Python lacks for the import: Pillow to decode the images, pyarrow to read GEdit-Bench's parquet."""
    needed = {**({"pyarrow.parquet": "reading parquet"} if name == "gedit" else {}), "PIL": "decoding the images"}
    missing = []
    for module, use in needed.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(use)
    return missing


def _in_judge_environment(args: argparse.Namespace, argv: list[str], missing: list[str]) -> int:
    """Run this same import with the judge environment's interpreter (found or built), which has Pillow and
    pyarrow."""
    from launch.envs import EnvError, prepare_environments
    from shards.config import REPO_ROOT, ConfigError, load_config

    config = args.config or os.path.join(REPO_ROOT, "configs", f"{args.name}.yaml")
    try:
        python = prepare_environments(load_config(config), stages=("score",))["score"]
    except (ConfigError, EnvError) as e:
        print(f"error: {' and '.join(missing)} needs the judge environment: {e}", file=sys.stderr)
        return 2
    print(f"[import] {' and '.join(missing)} with the judge environment's {python}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([python, "-m", "launch", "import-benchmark", *argv], env=env).returncode
