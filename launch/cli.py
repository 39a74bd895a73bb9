"""`python3 -m launch --config C`: prepare both environments, run the edit stage, then the score stage.

Everything that can be checked without a model is checked first (config keys, template placeholders, dataset
lines, image paths), so a typo costs seconds, not an environment build or an hour of editing.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

from launch.console import Console
from launch.envs import EnvError, describe_env, prepare_environments
from launch.rollcall import roll_call
from launch.stages import Rendezvous, StageFailed, run_jobs, start_job, torchrun_command
from launch.sweep.report import SweepError, write_sweep_report
from launch.sweep.runs import check_sweep_args, editor_environments, stage_jobs, swept
from shards.config import REPO_ROOT, ConfigError, add_run_arguments, load_config, overrides_from_args, run_arguments
from shards.dataset import DatasetError, run_samples
from shards.events import CONSOLE_ENV, RUN_ID_ENV, STAGES, Terminated, raise_terminated
from shards.folder.lock import acquire, new_run_id, release
from shards.folder.records import ResumeError
from shards.folder.seats import leave_seat, take_seat
from shards.serving.vllm import ServerFailed, judge_server
from shards.sweep import SweepRun, check_sweep_folder, checkpoint_arguments, run_folders, sweep_runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="launch", description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--nproc-per-node", type=int, help="ranks per stage (default: the config's)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="create the stage environments, then stop (nothing is edited or judged)")
    parser.add_argument("--edits", metavar="SOURCE",
                        help="score edits made elsewhere instead of running the editor: a folder of "
                             "<id>.png/.jpg/.webp, or a JSONL of {\"id\": ..., \"edited\": path} lines")
    parser.add_argument("--judge-gpus", type=int, metavar="K",
                        help="judge on K of this node's GPUs while the edit stage runs on the others, each shard "
                             "part judged as soon as it is written (default: the stages one after the other)")
    nodes = parser.add_argument_group("several nodes (every node runs the same command on one shared output folder)")
    nodes.add_argument("--nnodes", type=int, default=1, help="number of nodes (default 1)")
    nodes.add_argument("--node-rank", type=int, help="this node's rank, 0..nnodes-1: a static rendezvous hosted by "
                                                     "node 0 (default: the elastic c10d rendezvous numbers the "
                                                     "nodes as they join)")
    nodes.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the nodes meet, the same on every node: "
                                                                    "node 0's host with --node-rank (the score "
                                                                    "stage uses PORT+1), else the c10d endpoint")
    nodes.add_argument("--rdzv-id", help="a name for the run, the same on every node (default: from the output "
                                         "folder)")
    parser.add_argument("--restart", nargs="?", const="edit", choices=STAGES,
                        help="start over instead of resuming: 'edit' (the default) discards the output folder's "
                             "edits and scores, 'score' only its scores")
    return parser.parse_args(argv)


def say(line: str) -> None:
    """A line of the launcher's own for the watching person, at once."""
    print(f"[launch] {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Check, prepare, run both stages, print the table; returns the exit status."""
    args = parse_args(argv)
    # Without this, SIGTERM would end the launcher alone, and torchrun and its ranks (in a session of their own,
    # see start_job) would run on until they died of a broken pipe.
    signal.signal(signal.SIGTERM, raise_terminated)
    run_id, taken = None, []           # a config refused before any folder is locked has nothing to release
    try:
        check_launch_args(args)
        overrides = overrides_from_args(args)
        if args.nproc_per_node is not None:
            overrides["distributed.nproc_per_node"] = args.nproc_per_node
        config = load_config(args.config, overrides)
        runs = sweep_runs(config, overrides)
        check_sweep_args(config, args)
        if not args.prepare_only:      # preparing reads and writes nothing in the output folder
            check_sweep_folder(config)
        split_ranks(config.distributed.nproc_per_node, args.judge_gpus)
        found = run_samples(config, allow_missing_images=config.dataset.skip_unreadable_images)
        samples, selected = found.every, found.selected
        rendezvous = Rendezvous(args.nnodes, args.node_rank, args.rdzv_endpoint,
                                args.rdzv_id or default_run_id(config.output_dir),
                                config.distributed.rendezvous_timeout_s)
        # The nodes of one run share its lock through the run id; a single node's run has an id of its own.
        # Preparing the environments writes nothing into the output folder: no lock.
        run_id = None if args.prepare_only else rendezvous.run_id if args.nnodes > 1 else new_run_id()
        folders = run_folders(config, runs)
        taken = []
        for folder in folders if run_id else []:
            for message in acquire(folder, run_id, say=say):
                say(message)
            taken.append(folder)
    except (ConfigError, DatasetError, ResumeError) as e:
        for folder in taken:
            release(folder, run_id)
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        if run_id and args.nnodes > 1:     # the run's lock lets every node in: a second copy of one is refused here
            take_seat(config.output_dir, run_id, args.node_rank, args.nnodes, say=say)
        for one in runs if not args.prepare_only else []:
            check_run_folder(one, args.restart, args.edits, samples, selected)
        pythons = prepare_environments(config)
        editors = editor_environments(runs, pythons) if config.sweep else {}
        return run(config, pythons, args, rendezvous, run_id, len(selected), len(samples), editors)
    except (ConfigError, DatasetError, ResumeError, EnvError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        if run_id:
            leave_seat(config.output_dir, run_id)
            for folder in folders:
                release(folder, run_id)


def check_launch_args(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot work, before anything is read."""
    if args.nnodes < 1:
        raise ConfigError(f"--nnodes {args.nnodes}: must be at least 1")
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise ConfigError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT, the same on every node")
    if args.rdzv_endpoint and not args.rdzv_endpoint.rpartition(":")[2].isdigit():
        raise ConfigError(f"--rdzv-endpoint {args.rdzv_endpoint}: expected HOST:PORT")
    if args.node_rank is not None and not 0 <= args.node_rank < args.nnodes:
        raise ConfigError(f"--node-rank {args.node_rank}: must be in 0..{args.nnodes - 1}")
    if args.judge_gpus is not None and args.judge_gpus < 1:
        raise ConfigError(f"--judge-gpus {args.judge_gpus}: must be at least 1")
    # The id names folders of the output folder (the roll call, the nodes' seats) and torchrun's rendezvous.
    if args.rdzv_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.rdzv_id):
        raise ConfigError(f"--rdzv-id {args.rdzv_id!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting "
                          "with a letter or digit (a scheduler's job id, say)")


def default_run_id(output_dir: str) -> str:
    """The same on every node that writes into the same output folder."""
    return "qeb-" + hashlib.sha256(os.path.abspath(output_dir).encode()).hexdigest()[:12]


def run(config, pythons: dict[str, str], args: argparse.Namespace, rendezvous: Rendezvous, run_id: str | None,
        selected: int, total: int, editors: dict[str, list[str]]) -> int:
    """Run the stages and print the table; returns the exit status."""
    for stage, python in pythons.items():
        print(f"[launch] {stage} environment: {python} ({describe_env(python)})", flush=True)
    if args.prepare_only:
        return 0
    print(f"[launch] {selected} of {total} samples selected; output: {config.output_dir}", flush=True)
    try:
        run_both(config, pythons, args, rendezvous, run_id, editors)
        if config.sweep is not None:
            write_sweep_report(config.output_dir, swept(editors), config.sweep.base)
    except (StageFailed, ServerFailed, SweepError) as e:
        print(f"\n[launch] error: {e}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, Terminated) as e:
        why = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"\n[launch] {why}; the stages were stopped, and their finished work is kept: run the same command "
              "again to resume", file=sys.stderr, flush=True)
        return 143 if isinstance(e, Terminated) else 130
    if args.nnodes > 1 and not os.path.isfile(os.path.join(config.output_dir, "report.md")):
        print("[launch] node done; the report is written by the node of global rank 0", flush=True)
        return 0
    print_summary(config.output_dir, "sweep" if config.sweep is not None else "report")
    return 0


def check_run_folder(run: SweepRun, restart: str | None, edits: str | None, samples: list, selected: list) -> None:
    """`check_output_folder` of a single run, or of one checkpoint of a sweep, whose refusal then says how to redo
    that checkpoint alone: `--restart` would start every checkpoint of the sweep over."""
    try:
        check_output_folder(run.config, restart, edits, samples, selected)
    except ResumeError as e:
        if not run.name:
            raise
        raise ResumeError(f"{e}\nIn a sweep, --restart starts every checkpoint over: to redo checkpoint "
                          f"'{run.name}' alone, remove its folder {run.config.output_dir} and run the sweep again "
                          "(the other checkpoints keep their work).") from None


def check_output_folder(config, restart: str | None, edits: str | None, samples: list, selected: list) -> None:
    """Refuse, before any environment is built, an output folder that holds another run's work, files of others
    where the run would write, or files a restart would have to delete that the tool did not write; with
    `edits`, also a source of brought edits with missing, extra or duplicate images.

    The stages check again themselves (with the image digests too); this only makes the refusal immediate.
    """
    from shards.brought_edits import edits_identity, find_edits
    from shards.files import sha256_file
    from shards.folder.identity import check_resumable
    from shards.folder.records import check_restartable

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


def run_both(config, pythons: dict[str, str], args: argparse.Namespace, rendezvous: Rendezvous, run_id: str,
             editors: dict[str, list[str]]) -> None:
    """The edit job (or the import of brought edits), then the score job on its output, each with its own
    interpreter; with `--judge-gpus K`, both at once, the judge on K GPUs following the edits as they land. A
    sweep whose editors need environments of their own has an edit job per environment."""
    stage_args = run_arguments(args, config)
    logs = os.path.join(config.output_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    node = f"node{args.node_rank if args.node_rank is not None else socket.gethostname()}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ranks = split_ranks(config.distributed.nproc_per_node, args.judge_gpus)
    console = Console(sys.stdout.buffer, tty=sys.stdout.isatty())
    # The ranks write progress events instead of bars; a library's own bar (the hub client's download, on the one
    # rank that fetches) is redrawn at most every 10 s, each frame a line of the console.
    env = {RUN_ID_ENV: run_id, CONSOLE_ENV: "events", "TQDM_MININTERVAL": "10"}
    with open(os.path.join(logs, f"launch-{node}-{stamp}.log"), "ab") as log_file, contextlib.ExitStack() as here:
        jobs = []
        for i, (stage, python, only) in enumerate(stage_jobs(pythons, editors)):
            several = stage == "edit" and len(editors) > 1     # one edit job per editor environment
            log_dir = os.path.join(logs, f"torchrun-{stage}-{node}-{stamp}" + (f"-{i}" if several else ""))
            picked = checkpoint_arguments(only) if only else []
            # Restarting the edit stage also removes the scores computed from its edits.
            restart = ["--restart"] if stage == args.restart else []
            follow = ["--follow-edits"] if stage == "score" and args.judge_gpus else []
            if stage == "edit" and args.edits:   # one process, no model: brought edits become shards
                command = [pythons[stage], "-m", "edit_stage.brought_edits", *stage_args, *restart,
                           "--edits", os.path.abspath(args.edits)]
            else:
                command = torchrun_command(python, stage, ranks[stage], log_dir,
                                           stage_args + restart + follow + picked, rendezvous)
                if "serve" in pythons and not jobs and (stage == "score" or args.judge_gpus):
                    # Before the score stage (or both, side by side): the GPUs are the editor's until then.
                    ensure_tiny_judge(config, pythons["score"])
                    judge_gpus = gpu_env(config, ranks, "score", args.judge_gpus).get("CUDA_VISIBLE_DEVICES")
                    here.enter_context(judge_server(config.score, config.distributed.device, pythons["serve"],
                                                    os.path.join(logs, f"serve-{node}-{stamp}.log"), say,
                                                    judge_gpus))
                if rendezvous.nnodes > 1 and not jobs:   # side by side, one roll call serves both stages
                    here.enter_context(roll_call(config.output_dir, rendezvous, stage))
            print(f"[launch] {stage} stage: {' '.join(command)}", flush=True)
            jobs.append(start_job(stage, command, log_dir, {**env, **gpu_env(config, ranks, stage, args.judge_gpus)},
                                  lock=(config.output_dir, run_id)))
            if not args.judge_gpus:
                seconds = run_jobs(jobs, console, log_file, config.distributed.stage_timeout_s)
                print(f"[launch] {stage} stage done in {seconds[stage]:.1f}s", flush=True)
                jobs = []
        if jobs:
            for stage, seconds in run_jobs(jobs, console, log_file, config.distributed.stage_timeout_s).items():
                print(f"[launch] {stage} stage done in {seconds:.1f}s", flush=True)


def ensure_tiny_judge(config, python: str) -> None:
    """Demo and tests: a judge server needs its tiny judge on disk before it starts (the score stage would build
    it only afterwards); built in the judge's environment, as the score stage builds it."""
    if config.score.build_tiny and not os.path.exists(os.path.join(config.score.model, "config.json")):
        say(f"building the tiny judge at {config.score.model}")
        done = subprocess.run([python, "-m", "score_stage.tiny", "--output", config.score.model, "--moe"],
                              cwd=REPO_ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": REPO_ROOT})
        if done.returncode != 0:
            raise StageFailed(f"building the tiny judge failed:\n{done.stderr[-3000:]}")


def split_ranks(nproc: int, judge_gpus: int | None) -> dict[str, int]:
    """Ranks per stage on this node: all for each stage in turn, or nproc - K editing and K judging at once."""
    if not judge_gpus:
        return {"edit": nproc, "score": nproc}
    if judge_gpus >= nproc:
        raise ConfigError(f"--judge-gpus {judge_gpus}: leave at least one of the node's {nproc} GPUs (ranks) "
                          "to the edit stage")
    return {"edit": nproc - judge_gpus, "score": judge_gpus}


def gpu_env(config, ranks: dict[str, int], stage: str, judge_gpus: int | None) -> dict[str, str]:
    """With the GPUs split between the stages, each stage sees only its own (CUDA_VISIBLE_DEVICES)."""
    if not judge_gpus or config.distributed.device == "cpu":
        return {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(ranks["edit"] + ranks["score"])]
    mine = devices[: ranks["edit"]] if stage == "edit" else devices[ranks["edit"]: ranks["edit"] + ranks["score"]]
    return {"CUDA_VISIBLE_DEVICES": ",".join(mine)}


def print_summary(output_dir: str, name: str) -> None:
    """The report's (or the sweep's) Markdown, and where its page and data are."""
    with open(os.path.join(output_dir, f"{name}.md"), encoding="utf-8") as f:
        print("\n" + f.read().strip(), flush=True)
    print(f"\n[launch] {name}: {os.path.join(output_dir, name + '.html')}", flush=True)
    data = [f"{name}.json"] + (["results.csv"] if name == "report" else [])
    print(f"[launch] data: {', '.join(os.path.join(output_dir, d) for d in data)}", flush=True)
