"""`python3 -m launch sweep-report --output-dir D [--base NAME]`: write a sweep's report (again) from its folder.

The checkpoints are the subfolders of D that hold a report.json (a subfolder without one is named on stderr, not
reported on); `--base` names the base model's. A sweep writes this report itself once every checkpoint is
scored; this command writes it again, after a checkpoint was rescored or to see a sweep that is not finished.
Reads JSON only: no config, no stage environment.
"""

from __future__ import annotations

import argparse
import os
import sys

from launch.sweep.report import OUTPUTS, SweepError, write_sweep_report


def checkpoint_folders(sweep_dir: str) -> tuple[list[str], list[str]]:
    """(the subfolders of `sweep_dir` holding a report.json, those holding none), by name."""
    folders = sorted(n for n in os.listdir(sweep_dir) if os.path.isdir(os.path.join(sweep_dir, n)))
    scored = [n for n in folders if os.path.isfile(os.path.join(sweep_dir, n, "report.json"))]
    return scored, [n for n in folders if n not in scored]


def main(argv: list[str] | None = None) -> int:
    """Find the checkpoints, write sweep.json, sweep.md and sweep.html; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python3 -m launch sweep-report", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="the sweep's folder: one run folder per checkpoint")
    parser.add_argument("--base", metavar="NAME", help="the base model's checkpoint folder (compared with every "
                                                       "checkpoint, and first on the page)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.output_dir):
        print(f"error: {args.output_dir}: no such folder", file=sys.stderr)
        return 2
    names, unscored = checkpoint_folders(args.output_dir)
    if args.base is not None and args.base not in names:
        print(f"error: --base {args.base}: no subfolder of {args.output_dir} of that name holds a report.json "
              f"(those that do: {', '.join(names) or 'none'})", file=sys.stderr)
        return 2
    if unscored:
        print(f"[sweep-report] not reported on, no report.json: {', '.join(unscored)}", file=sys.stderr)
    try:
        result = write_sweep_report(args.output_dir, names, args.base)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["best"]["statement"])
    for name in OUTPUTS:
        print(f"[sweep-report] wrote {os.path.join(args.output_dir, name)}")
    return 0
