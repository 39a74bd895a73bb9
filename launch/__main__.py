"""`python3 -m launch --config C ...` runs a benchmark; `python3 -m launch compare RUN_DIR RUN_DIR... --output D`
compares scored runs; `python3 -m launch import-benchmark NAME SOURCE --output D` imports a public benchmark;
`python3 -m launch lock --config C` locks the stage environments. See launch.cli, launch.compare.cli,
launch.importers and launch.lockfiles."""

import sys

from launch.cli import main


def dispatch(argv: list[str]) -> int:
    """The subcommand named first, or a run."""
    if argv and argv[0] == "compare":
        from launch.compare.cli import main as compare

        return compare(argv[1:])
    if argv and argv[0] == "import-benchmark":
        from launch.importers import main as import_benchmark

        return import_benchmark(argv[1:])
    if argv and argv[0] == "lock":
        from launch.lockfiles import main as lock

        return lock(argv[1:])
    return main(argv)


sys.exit(dispatch(sys.argv[1:]))
