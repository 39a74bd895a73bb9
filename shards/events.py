"""How the launcher and the stages it starts talk: the stages in their order, the environment variables it sets,
the progress event line, and SIGTERM, which stops a stage (or the launcher) the way Ctrl-C does.

Standard library only: both the launcher and the stages import it.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

STAGES = ("edit", "score")            # in the order they run: restarting one discards the ones after it

RUN_ID_ENV = "EDIT_BENCH_RUN_ID"      # the launcher's run id: its stages share its lock of the output folder
CONSOLE_ENV = "EDIT_BENCH_CONSOLE"    # "events": write progress events, not bars (the launcher draws them)
PROGRESS_MARK = "@@progress "         # a progress event: this, then one JSON object, on a line of its own


class Terminated(BaseException):
    """SIGTERM arrived: torchrun stops the other ranks this way when one rank fails, and a scheduler's cancel or
    `kill` stops the launcher this way.

    A BaseException, like KeyboardInterrupt, so no `except Exception` in a library swallows it.
    """


def raise_terminated(signum, frame) -> None:
    """A SIGTERM handler: raise `Terminated`, naming the signal."""
    raise Terminated(f"stopped by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated`, so `with` exits run (the edit stage closes its open part).

    Only around Python-level work loops: a handler runs between bytecodes, so a rank blocked inside a collective
    would not run it until the collective returned, and torchrun would wait its 30 s grace before SIGKILL.
    Outside the block SIGTERM keeps its default and ends the rank at once.
    """
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
