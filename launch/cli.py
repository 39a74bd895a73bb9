"""`python3 -m launch --config C`: prepare both environments, run the edit stage, then the score stage.

Everything that can be checked without a model is checked first (config keys, template placeholders, dataset
lines, image paths), so a typo costs seconds, not an environment build or an hour of editing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import subprocess
import sys
import time

from launch.envs import EnvError, ensure_venv, existing_interpreter, requirements_stamp
from launch.stages import StageFailed, run_stage, torchrun_command

STAGES = ("edit", "score")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="launch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="run config (YAML)")
    parser.add_argument("--output-dir", help="output folder (default: the config's output_dir)")
    parser.add_argument("--nproc-per-node", type=int, help="ranks per stage (default: the config's)")
    parser.add_argument("--categories", nargs="+", help="run only these categories")
    parser.add_argument("--limit", type=int, help="run only the first N selected samples")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="set a config key for this run in both stages, e.g. --set score.mode=generate "
                             "(repeatable; the value is read as YAML)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="create the stage environments, then stop (nothing is edited or judged)")
    parser.add_argument("--edits", metavar="SOURCE",
                        help="score edits made elsewhere instead of running the editor: a folder of "
                             "<id>.png/.jpg/.webp, or a JSONL of {\"id\": ..., \"edited\": path} lines")
    parser.add_argument("--restart", nargs="?", const="edit", choices=STAGES,
                        help="start over instead of resuming: 'edit' (the default) discards the output folder's "
                             "edits and scores, 'score' only its scores")
    return parser.parse_args(argv)


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler's cancel, `kill`): like Ctrl-C, it stops the stages before the launcher goes."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Check, prepare, run both stages, print the table; returns the exit status."""
    args = parse_args(argv)
    # Without this, SIGTERM would end the launcher alone, and torchrun and its ranks (in a session of their own,
    # see run_stage) would run on until they died of a broken pipe.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from shards.config import ConfigError, load_config, overrides_from_args
        from shards.dataset import DatasetError, load_dataset, select_samples
        from shards.resume import ResumeError
    except ImportError as e:
        print(f"error: the launcher needs PyYAML in this Python ({sys.executable}): {e}", file=sys.stderr)
        return 2
    try:
        overrides = overrides_from_args(args)
        if args.nproc_per_node is not None:
            overrides["distributed.nproc_per_node"] = args.nproc_per_node
        config = load_config(args.config, overrides)
        samples = load_dataset(config.dataset.path, categories=list(config.score.prompts),
                               allow_missing_images=config.dataset.skip_unreadable_images)
        selected = select_samples(samples, config.dataset.categories, config.dataset.limit)
        check_output_folder(config, args.restart, args.edits, samples, selected)
        pythons = prepare_environments(config)
    except (ConfigError, DatasetError, ResumeError, EnvError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    for stage, python in pythons.items():
        print(f"[launch] {stage} environment: {python} ({describe_env(python)})", flush=True)
    if args.prepare_only:
        return 0
    print(f"[launch] {len(selected)} of {len(samples)} samples selected; output: {config.output_dir}", flush=True)
    try:
        run_both(config, pythons, args)
    except StageFailed as e:
        print(f"\n[launch] error: {e}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, Terminated) as e:
        why = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"\n[launch] {why}; the stages were stopped, and their finished work is kept: run the same command "
              "again to resume", file=sys.stderr, flush=True)
        return 143 if isinstance(e, Terminated) else 130
    print_summary(config.output_dir)
    return 0


def check_output_folder(config, restart: str | None, edits: str | None, samples: list, selected: list) -> None:
    """Refuse, before any environment is built, an output folder that holds another run's work, files of others
    where the run would write, or files a restart would have to delete that the tool did not write; with
    `edits`, also a source of brought edits with missing, extra or duplicate images.

    The stages check again themselves (with the image digests too); this only makes the refusal immediate.
    """
    from shards.edits import edits_identity, find_edits
    from shards.identity import check_resumable
    from shards.resume import check_restartable
    from shards.store import sha256_file

    identities = {}
    if edits:
        root = os.path.dirname(config.dataset.path)    # a sample whose original is gone wants no edit
        wanted = [s.id for s in selected if os.path.isfile(os.path.join(root, s.image))]
        found = find_edits(edits, wanted, [s.id for s in samples])
        identities["edit"] = edits_identity(edits, found, sha256_file(config.dataset.path))
    for stage in STAGES[: STAGES.index(restart) if restart else len(STAGES)]:
        for note in check_resumable(config, stage, identities.get(stage)):
            print(f"[launch] note: {note}", flush=True)
    if restart:
        check_restartable(config.output_dir, restart)


def prepare_environments(config) -> dict[str, str]:
    """Both stages' interpreters. Every stage's setting is checked first (an interpreter path, a conda name, a
    venv's extras), so that a mistake in one stops the launch before any environment is built or rebuilt; then
    missing venvs are built side by side (pip mostly waits on disk)."""
    envs = {stage: getattr(config, stage).env for stage in STAGES}
    pythons = {stage: existing_interpreter(env, stage) for stage, env in envs.items()}
    for stage, env in envs.items():
        try:
            if pythons[stage] is None:
                requirements_stamp(env.extras, env.torch_index)
        except EnvError as e:
            raise EnvError(f"{stage}.env.extras: {e}") from None
    to_build = [stage for stage in STAGES if pythons[stage] is None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(STAGES)) as pool:
        futures = {stage: pool.submit(ensure_venv, envs[stage].venv, envs[stage].extras, stage,
                                      envs[stage].torch_index) for stage in to_build}
        pythons.update({stage: future.result() for stage, future in futures.items()})
    return pythons


def describe_env(python: str) -> str:
    """The versions that matter, read from the environment's package metadata (no heavy imports)."""
    code = ("import importlib.metadata as m\n"
            "for n in ('torch', 'transformers', 'diffusers'):\n"
            "    try: print(f'{n} {m.version(n)}')\n"
            "    except m.PackageNotFoundError: pass")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return ", ".join(done.stdout.split("\n")).strip(", ") if done.returncode == 0 else done.stderr.strip()


def run_both(config, pythons: dict[str, str], args: argparse.Namespace) -> None:
    """The edit job (or the import of brought edits), then the score job on its output, each with its own
    interpreter."""
    stage_args = ["--config", config.source, "--output-dir", config.output_dir]
    if args.categories:
        stage_args += ["--categories", *args.categories]
    if args.limit is not None:
        stage_args += ["--limit", str(args.limit)]
    for setting in args.settings:
        stage_args += ["--set", setting]
    logs = os.path.join(config.output_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(logs, f"launch-{stamp}.log"), "ab") as log_file:
        for stage in STAGES:
            log_dir = os.path.join(logs, f"torchrun-{stage}-{stamp}")
            # Restarting the edit stage also removes the scores computed from its edits.
            restart = ["--restart"] if stage == args.restart else []
            if stage == "edit" and args.edits:   # one process, no model: brought edits become shards
                command = [pythons[stage], "-m", "edit_stage.imports", *stage_args, *restart,
                           "--edits", os.path.abspath(args.edits)]
            else:
                command = torchrun_command(pythons[stage], stage, config.distributed.nproc_per_node, log_dir,
                                           stage_args + restart)
            print(f"[launch] {stage} stage: {' '.join(command)}", flush=True)
            seconds = run_stage(stage, command, log_dir, log_file, config.distributed.stage_timeout_s)
            print(f"[launch] {stage} stage done in {seconds:.1f}s", flush=True)


def print_summary(output_dir: str) -> None:
    with open(os.path.join(output_dir, "report.md"), encoding="utf-8") as f:
        print("\n" + f.read().strip(), flush=True)
    print(f"\n[launch] report: {os.path.join(output_dir, 'report.html')}", flush=True)
    print(f"[launch] data: {os.path.join(output_dir, 'report.json')}, {os.path.join(output_dir, 'results.csv')}",
          flush=True)
