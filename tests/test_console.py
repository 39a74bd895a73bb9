"""The launcher's console: one progress line per rank, every other line once, through a terminal and not."""

import io
import json
import os
import pty
import re
import select
import time

import pytest

from conftest import DEMO_CONFIG, REPO, base_python
from launch.console import Console


def _event(rank, what, n, total):
    return f"[default{rank}]:@@progress " + json.dumps({"stage": "edit", "rank": rank, "what": what, "n": n,
                                                         "total": total}) + "\n"


def test_events_become_one_line_per_rank_and_repeated_warnings_show_once():
    out = io.BytesIO()
    console = Console(out, tty=False, interval_s=3600)
    stream = (_event(0, "samples", 0, 4) + _event(1, "samples", 0, 4) + "[default0]:UserWarning: slow path\n"
              + "[default1]:UserWarning: slow path\n" + "[default1]:[edit r1/2] edited a in 1.0s\n"
              + _event(0, "denoise", 2, 40) + _event(0, "samples", 3, 4) + _event(1, "samples", 1, 4)).encode()
    for i in range(0, len(stream), 7):                               # lines split anywhere across chunks
        console.feed(stream[i: i + 7], "edit")
    console.close("edit")
    lines = out.getvalue().decode().splitlines()
    assert lines[:2] == ["UserWarning: slow path", "[edit r1/2] edited a in 1.0s"]
    assert lines[2].startswith("[edit r0] 3 done · step 2/40 · ") and lines[3].startswith("[edit r1] 1 done · ")
    assert lines[4].startswith("[edit] 4 of 4 done") and "1 repeated line(s)" in lines[5]
    assert not any("@@progress" in line or "[default" in line for line in lines)


def test_a_line_torchrun_tore_is_joined_again():
    out = io.BytesIO()
    console = Console(out, tty=False, interval_s=3600)
    event = _event(0, "samples", 1, 2)
    # rank 0's line and its progress event each came out in two pieces, with rank 1's line between
    console.feed(b"[default0]:[edit r0/2] edi[default1]:[edit r1/2] edited b in 1.0s\n[default0]:ted a in 2.0s\n"
                 + event[:40].encode() + b"[default0]:" + event[40:].encode(), "edit")
    console.close("edit")
    lines = out.getvalue().decode().splitlines()
    assert lines[:3] == ["[edit r1/2] edited b in 1.0s", "[edit r0/2] edited a in 2.0s", lines[2]]
    assert lines[2].startswith("[edit r0] 1 done · ") and lines[3].startswith("[edit] 1 of 2 done")


def test_on_a_terminal_the_progress_block_is_redrawn_in_place():
    out = io.BytesIO()
    console = Console(out, tty=True)
    console.feed(_event(0, "samples", 1, 2).encode(), "edit")
    time.sleep(0.25)
    console.feed(b"[default0]:a line of output\n", "edit")
    text = out.getvalue().decode()
    drawn, rest = text.split("\x1b[1A\x1b[2K" * 2 + "\r", 1)      # the two-line block, then moved over it
    assert drawn.startswith("[edit r0] 1 done · ") and "[edit] 1 of 2 done" in drawn
    assert rest.startswith("a line of output\n")                      # the line takes the block's place


@pytest.mark.slow
def test_through_a_pseudo_terminal_the_screen_has_one_progress_line_per_rank_and_no_torn_fragments(pythons,
                                                                                                 tmp_path):
    import pyte

    screen = pyte.Screen(160, 400)
    stream = pyte.ByteStream(screen)
    pid, fd = pty.fork()
    if pid == 0:                                                      # the child: the launcher on a terminal
        os.chdir(REPO)
        os.environ["PYTHONPATH"] = REPO
        os.execv(base_python(), [base_python(), "-m", "launch", "--config", DEMO_CONFIG, "--output-dir",
                                 str(tmp_path / "run"), "--categories", "物理", "环境"])
    raw = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 600)
        try:
            chunk = os.read(fd, 65536) if ready else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        raw += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, raw.decode("utf-8", "replace")[-3000:]
    stream.feed(raw)
    lines = [line.rstrip() for line in screen.display if line.strip()]
    for stage in ("edit", "score"):
        for rank in (0, 1):                                           # one final line per rank and stage
            assert sum(line.startswith(f"[{stage} r{rank}] ") and " done" in line for line in lines) == 1, lines
    torn = [line for line in lines if "@@progress" in line or "[default" in line or "it/s]" in line]
    assert not torn, torn
    assert not any(len(re.findall(r"\[(edit|score) r\d", line)) > 1 for line in lines)   # no two lines in one
    assert sum(bool(re.match(r"\[edit r\d/2\] edited ", line)) for line in lines) == 4, lines
    assert any(line.startswith("| **mean over samples** | 4 |") for line in lines)
