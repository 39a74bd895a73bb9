"""`python3 -m launch --config C ...` runs a benchmark; `python3 -m launch compare RUN_DIR RUN_DIR... --output D`
compares scored runs; `python3 -m launch sweep-report --output-dir D` writes a sweep's report again from its
checkpoints' runs; `python3 -m launch import-benchmark NAME SOURCE --output D` imports a public benchmark;
`python3 -m launch lock --config C` locks the stage environments. See launch.cli, launch.compare,
launch.sweep, launch.importers and launch.lockfiles."""

import sys


def has_pyyaml() -> bool:
    """Whether this Python can read a config; says what to do when it cannot (the one package the launcher needs
    beside the standard library)."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        print(f"error: the launcher reads configs with PyYAML, which this Python ({sys.executable}) lacks: "
              f"{sys.executable} -m pip install pyyaml", file=sys.stderr)
        return False
    return True


def dispatch(argv: list[str]) -> int:
    """The subcommand named first, or a run."""
    if argv and argv[0] == "compare":           # reads JSON only: no config, no PyYAML
        from launch.compare.cli import main as compare

        return compare(argv[1:])
    if argv and argv[0] == "sweep-report":      # reads JSON only, as compare
        from launch.sweep.cli import main as sweep_report

        return sweep_report(argv[1:])
    if not has_pyyaml():
        return 2
    if argv and argv[0] == "import-benchmark":
        from launch.importers import main as import_benchmark

        return import_benchmark(argv[1:])
    if argv and argv[0] == "lock":
        from launch.lockfiles import main as lock

        return lock(argv[1:])
    from launch.cli import main

    return main(argv)


sys.exit(dispatch(sys.argv[1:]))
