"""Launcher: one command that prepares the stage environments and runs the two torchrun jobs.

    python3 -m launch --config configs/demo.yaml

`cli` is the run command (`stages` starts and streams the jobs, `console` draws them, `rollcall` waits for the
other nodes, `envs` and `lockfiles` find or build each stage's environment from its pinned lock); `compare/`
compares scored runs, `importers/` brings public benchmarks in as they ship. Runs with the bare standard library
(and PyYAML to read the config), before any stage environment exists.
"""
