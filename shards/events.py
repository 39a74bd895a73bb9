"""How the launcher and the stages it starts talk: environment variables it sets, and the progress event line.

Standard library only: both the launcher and the stages import it.
"""

RUN_ID_ENV = "EDIT_BENCH_RUN_ID"      # the launcher's run id: its stages share its lock of the output folder
CONSOLE_ENV = "EDIT_BENCH_CONSOLE"    # "events": write progress events, not bars (the launcher draws them)
PROGRESS_MARK = "@@progress "         # a progress event: this, then one JSON object, on a line of its own
