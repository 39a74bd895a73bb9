"""Launcher: one command that prepares both stage environments and runs the two torchrun jobs.

    python3 -m launch --config configs/demo.yaml

Runs with the bare standard library (and PyYAML to read the config), before any stage environment exists.
"""
