"""One writer per output folder: the lock, shared by one run's processes, refused to another, taken over when
its holder is gone; and how the nodes of one run meet."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from shards.folder.lock import acquire, lock_path, read_lock, release
from shards.folder.records import ResumeError


def test_a_second_run_is_refused_naming_the_holder_and_the_same_run_joins(tmp_path):
    assert acquire(str(tmp_path), "run-a") == []
    holder = read_lock(str(tmp_path))
    assert (holder["run_id"], holder["pid"], holder["host"]) == ("run-a", os.getpid(), socket.gethostname())
    assert acquire(str(tmp_path), "run-a") == []                     # another node of the same run
    with pytest.raises(ResumeError, match=rf"is being written by run run-a \(pid {os.getpid()} on "):
        acquire(str(tmp_path), "run-b")
    release(str(tmp_path), "run-a")
    assert not os.path.exists(lock_path(str(tmp_path)))
    acquire(str(tmp_path), "run-b")


def test_a_lock_whose_holder_is_gone_is_taken_over_with_a_message(tmp_path):
    dead = subprocess.Popen(["true"])                                 # a pid that no longer runs
    dead.wait()
    with open(lock_path(str(tmp_path)), "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead.pid, "run_id": "old", "started": "then"}, f)
    (message,) = acquire(str(tmp_path), "new")
    assert f"run old (pid {dead.pid}" in message and "is gone" in message
    assert read_lock(str(tmp_path))["run_id"] == "new"


def test_a_lock_held_from_another_host_says_how_to_clear_it(tmp_path):
    with open(lock_path(str(tmp_path)), "w") as f:
        json.dump({"host": "node-17", "pid": 4242, "run_id": "far", "started": "then"}, f)
    with pytest.raises(ResumeError, match=rf"if it has ended on node-17, delete {lock_path(str(tmp_path))}"):
        acquire(str(tmp_path), "mine")


def _join(args):
    folder, barrier = args
    barrier.wait()
    try:
        acquire(folder, "one-run")
        return "joined"
    except ResumeError as e:
        return str(e)


def test_the_nodes_of_one_run_taking_the_lock_at_the_same_moment_all_join_it(tmp_path):
    import multiprocessing

    with multiprocessing.Manager() as manager, multiprocessing.Pool(6) as pool:
        for attempt in range(20):                                     # the same race, many times over
            barrier = manager.Barrier(6)
            folder = str(tmp_path / str(attempt))
            assert pool.map(_join, [(folder, barrier)] * 6) == ["joined"] * 6
            assert read_lock(folder)["run_id"] == "one-run" and os.listdir(folder) == ["run.lock"]


def test_the_nodes_meet_statically_with_a_node_rank_and_elastically_without():
    from launch.stages import Rendezvous, torchrun_command

    static = Rendezvous(nnodes=2, node_rank=1, endpoint="node-a:29500", run_id="r")
    assert static.torchrun_args("edit") == ["--nnodes=2", "--node-rank=1", "--master-addr=node-a",
                                            "--master-port=29500"]
    assert static.torchrun_args("score")[-1] == "--master-port=29501"          # never the edit job's store
    elastic = Rendezvous(nnodes=2, endpoint="node-a:29500", run_id="r")
    assert elastic.torchrun_args("score") == ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=node-a:29500",
                                              "--rdzv-id=r-score"]
    command = torchrun_command("py", "edit", 4, "logs", ["--config", "c"])
    assert command[:4] == ["py", "-m", "torch.distributed.run", "--standalone"] and "--nproc-per-node=4" in command


def _write_lock(folder: str, content: str) -> str:
    path = lock_path(folder)
    with open(path, "w") as f:
        f.write(content)
    return path


def _dead_pid() -> int:
    dead = subprocess.Popen(["true"])
    dead.wait()
    return dead.pid


def _take_over(args):
    folder, barrier, run_id = args
    barrier.wait()
    try:
        acquire(folder, run_id)
        return "won"                                                  # and holds it: this worker lives on
    except ResumeError:
        return "refused"


def test_launches_racing_on_a_dead_holders_lock_take_it_over_once(tmp_path):
    import multiprocessing

    with multiprocessing.Manager() as manager, multiprocessing.Pool(6) as pool:
        for attempt in range(20):
            folder = str(tmp_path / str(attempt))
            os.makedirs(folder)
            _write_lock(folder, json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "run_id": "old",
                                            "started": "2020-01-01T00:00:00+0000"}))
            barrier = manager.Barrier(6)
            outcomes = pool.map(_take_over, [(folder, barrier, f"run-{i}") for i in range(6)])
            assert outcomes.count("won") == 1, (attempt, outcomes)
            assert read_lock(folder)["run_id"] == f"run-{outcomes.index('won')}"
            assert os.listdir(folder) == ["run.lock"]


@pytest.mark.parametrize("who", ["pid 1", "this very process", "an earlier version's record"])
def test_a_lock_naming_a_pid_that_now_belongs_to_another_process_is_taken_over_with_a_message(tmp_path, who):
    from shards.folder.liveness import boot_id, start_ticks

    pid = 1 if who == "pid 1" else os.getpid()
    record = {"host": socket.gethostname(), "pid": pid, "run_id": "old", "started": "2020-01-01T00:00:00+0000"}
    if who != "an earlier version's record":                          # the pid's process started at another time
        record.update(schema_version=2, pid_start=start_ticks(pid) + 1, boot_id=boot_id(), command="launch")
    _write_lock(str(tmp_path), json.dumps(record))
    (message,) = acquire(str(tmp_path), "new")
    assert f"run old (pid {pid} on {socket.gethostname()}" in message and "taking its lock over" in message
    assert f"pid {pid} now belongs to another process" in message
    assert read_lock(str(tmp_path))["run_id"] == "new"


def test_a_lock_of_a_machine_restarted_since_is_taken_over_with_a_message(tmp_path):
    _write_lock(str(tmp_path), json.dumps({"schema_version": 2, "host": socket.gethostname(), "pid": os.getpid(),
                                           "pid_start": 1, "boot_id": "another-boot", "run_id": "old",
                                           "command": "launch", "started": "then"}))
    (message,) = acquire(str(tmp_path), "new")
    assert "this machine has restarted since" in message


@pytest.mark.parametrize("content, why", [
    ("", "it is empty"),
    ("[1, 2]", "not a JSON object"),
    ("{\"host\": \"" + socket.gethostname() + "\", \"pid\": \"abc\", \"run_id\": \"x\"}", "'pid' is not a number"),
    ("{not json", "not JSON"),
])
def test_a_malformed_lock_file_gives_a_clear_error_saying_how_to_clear_it(tmp_path, content, why):
    path = _write_lock(str(tmp_path), content)
    with pytest.raises(ResumeError) as refused:
        acquire(str(tmp_path), "mine")
    assert f"{path} cannot be read as a lock ({why})" in str(refused.value)
    assert f"delete {path} and run again" in str(refused.value)


def test_processes_that_outlive_the_lock_holder_are_waited_for_then_named(tmp_path):
    # The orphan case: the process that took the lock is gone (a launcher killed with SIGKILL), but a process of
    # its run still holds the file open and locked (a rank still writing). Nobody may take the folder over yet.
    path = _write_lock(str(tmp_path), json.dumps({"host": socket.gethostname(), "pid": _dead_pid(),
                                                  "run_id": "old", "started": "2020-01-01T00:00:00+0000"}))
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_SH); "
            "print('held', flush=True); time.sleep(float(sys.argv[2]))")
    orphan = subprocess.Popen([sys.executable, "-c", hold, path, "60"], stdout=subprocess.PIPE, text=True)
    assert orphan.stdout.readline() == "held\n"
    said = []
    try:
        with pytest.raises(ResumeError, match=rf"process(es)? {orphan.pid} \(.*python.*\) of run old still hold"):
            acquire(str(tmp_path), "new", grace_s=1.0, say=said.append)
        assert f"is gone (no such process), but process {orphan.pid} still holds its lock; waiting up to 1 s" \
            in said[0]
    finally:
        orphan.kill()
        orphan.wait()
    dying = subprocess.Popen([sys.executable, "-c", hold, path, "1.5"], stdout=subprocess.PIPE, text=True)
    assert dying.stdout.readline() == "held\n"
    (message,) = acquire(str(tmp_path), "new", grace_s=30.0, say=said.append)
    assert dying.poll() is not None and "taking its lock over" in message
    dying.wait()


_FULL_DISK = """
import os, sys
from shards.folder.records import ResumeError
from shards.folder.lock import acquire
try:
    acquire(sys.argv[1], "run-a")
except ResumeError as e:
    print("refused:", e)
print("left:", sorted(os.listdir(sys.argv[1])))
"""


@pytest.mark.parametrize("full", ["tmpfs", "file size limit"])
def test_a_full_disk_gives_a_clear_error_and_leaves_nothing_behind(tmp_path, full):
    import resource
    import shutil

    from conftest import REPO

    env = {**os.environ, "PYTHONPATH": REPO}
    if full == "tmpfs":                    # a real full filesystem, mounted in a namespace of the test's own
        if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
            pytest.skip("no user namespaces here to mount a small tmpfs in; the file size limit case still runs")
        folder = str(tmp_path / "mnt" / "out")
        os.makedirs(folder)
        script = (f"mount -t tmpfs -o size=16k tmpfs {tmp_path}/mnt && mkdir {folder} && "
                  f"(dd if=/dev/zero of={tmp_path}/mnt/fill bs=4k count=100 2>/dev/null; "
                  f"exec \"$0\" -c \"$1\" {folder})")
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script, sys.executable, _FULL_DISK], env=env,
                              capture_output=True, text=True, timeout=60)
        why = "No space left on device"
    else:                                  # every write that would grow a file fails with EFBIG, as on a full disk
        folder = str(tmp_path / "out")
        os.makedirs(folder)
        done = subprocess.run([sys.executable, "-c", _FULL_DISK, folder], env=env, capture_output=True, text=True,
                              timeout=60, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)))
        why = "File too large"
    assert done.returncode == 0, done.stderr                          # a clear error, not a traceback
    assert f"refused: {folder}: cannot create the lock file {folder}/run.lock ({why})" in done.stdout
    assert "left: []" in done.stdout


def test_a_stage_job_dies_with_the_launcher_that_started_it():
    from shards.folder.liveness import start_ticks

    # A stand-in launcher starts a long child as start_job does, then is killed with SIGKILL.
    launcher = ("import os, subprocess, sys; from shards.folder.liveness import dies_with; "
                "child = subprocess.Popen(['sleep', '60'], start_new_session=True, preexec_fn=dies_with(os.getpid())); "
                "print(child.pid, flush=True); sys.stdin.read()")
    from conftest import REPO

    proc = subprocess.Popen([sys.executable, "-c", launcher], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})
    child = int(proc.stdout.readline())
    assert start_ticks(child) is not None
    proc.kill()
    proc.wait()
    for _ in range(100):
        if start_ticks(child) is None:
            break
        time.sleep(0.05)
    assert start_ticks(child) is None, "the child outlived its launcher"


def test_a_rank_of_a_run_whose_launcher_is_gone_stops_without_writing(tmp_path):
    folder = str(tmp_path)
    _write_lock(folder, json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "run_id": "launched",
                                    "started": "2020-01-01T00:00:00+0000"}))
    with pytest.raises(ResumeError, match=r"run launched, which this process belongs to, no longer holds the output "
                                          r"folder \(the process that took the lock, pid \d+, is gone\); it stops"):
        acquire(folder, "launched", join_only=True)
    os.remove(lock_path(folder))
    with pytest.raises(ResumeError, match=r"\(its lock file is gone\)"):
        acquire(folder, "launched", join_only=True)
    assert os.listdir(folder) == []


def _stop_after(seconds: float):
    """A SIGALRM that ends a call blocked in the kernel (an open of a named pipe) with TimeoutError."""
    import signal

    def hung(signum, frame):
        raise TimeoutError(f"still waiting after {seconds} s")
    signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)


@pytest.mark.parametrize("what, said", [
    ("a directory", "is a directory"),
    ("a named pipe", "is a named pipe"),
    ("a link to /etc/passwd", "is a symbolic link (to /etc/passwd)"),
    ("a link to nowhere", "is a symbolic link (to /nonexistent/run.lock)"),
    ("a link to itself", "is a symbolic link (to run.lock)"),
])
def test_a_lock_path_that_is_not_a_lock_file_is_refused_at_once_saying_what_it_is(tmp_path, what, said):
    import signal

    path = lock_path(str(tmp_path))
    {"a directory": lambda: os.mkdir(path), "a named pipe": lambda: os.mkfifo(path),
     "a link to /etc/passwd": lambda: os.symlink("/etc/passwd", path),
     "a link to nowhere": lambda: os.symlink("/nonexistent/run.lock", path),
     "a link to itself": lambda: os.symlink("run.lock", path)}[what]()
    start = time.monotonic()
    _stop_after(5.0)
    try:
        with pytest.raises(ResumeError) as refused:
            acquire(str(tmp_path), "mine")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert time.monotonic() - start < 2.0
    assert f"{path} {said}, not a lock file" in str(refused.value)
    assert f"remove {path} and run again" in str(refused.value)
    assert os.listdir(tmp_path) == ["run.lock"] and os.path.lexists(path)    # nothing removed or added


_TRY = """
import sys
from shards.folder.records import ResumeError
from shards.folder.lock import acquire
try:
    acquire(sys.argv[1], "mine", grace_s=1.0)
    print("taken")
except ResumeError as e:
    print("refused:", e)
"""


def _as_a_user_bound_by_permissions(folder: str) -> subprocess.CompletedProcess:
    """`_TRY` on `folder` by a process that file permissions bind (root without its override capabilities)."""
    import shutil

    from conftest import REPO

    command = [sys.executable, "-c", _TRY, folder]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root here, and no setpriv to run without the capability that overrides permissions")
        caps = "-dac_override,-dac_read_search,-fowner"
        command = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *command]
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("case", ["an unreadable lock", "a stale lock in a read-only folder",
                                  "no lock in a read-only folder"])
def test_a_lock_that_cannot_be_read_or_replaced_gives_a_clear_error(tmp_path, case):
    folder = str(tmp_path / "out")
    os.makedirs(folder)
    if case != "no lock in a read-only folder":
        _write_lock(folder, json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "run_id": "old",
                                        "started": "2020-01-01T00:00:00+0000"}))
    if case == "an unreadable lock":
        os.chmod(lock_path(folder), 0)
    else:
        os.chmod(folder, 0o555)
    try:
        done = _as_a_user_bound_by_permissions(folder)
    finally:
        os.chmod(folder, 0o755)
    assert done.returncode == 0, done.stderr                                  # a clear error, not a traceback
    path = lock_path(folder)
    expected = {"an unreadable lock": f"refused: {path} cannot be read (Permission denied)",
                "a stale lock in a read-only folder": f"refused: {path}: run old (pid ",
                "no lock in a read-only folder": f"refused: {folder}: cannot create the lock file {path} "
                                                 "(Permission denied); make the folder writable"}[case]
    assert done.stdout.startswith(expected), done.stdout
    if case == "a stale lock in a read-only folder":
        assert f"cannot be removed (Permission denied); make {folder} writable" in done.stdout


def test_a_node_rerun_joins_its_runs_stale_lock_that_only_another_hosts_node_holds(tmp_path, monkeypatch):
    # A multi-node run's id is the same at every launch. On a rerun, node 1 (another host) came first and joined the
    # lock the dead node-0 launcher had left (it cannot tell whether a process of another host lives). Node 0, on
    # the taker's host, then saw a dead taker and a lock held by processes it cannot see (the network filesystem
    # enforces node 1's lock, but this host's /proc/locks does not list it), waited 45 s and refused: the run could
    # not start again until node 1 gave up.
    import shards.folder.liveness

    folder = str(tmp_path)
    path = _write_lock(folder, json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "run_id": "qeb-run",
                                           "started": "2020-01-01T00:00:00+0000"}))
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_SH); "
            "print('held', flush=True); time.sleep(60)")
    node1 = subprocess.Popen([sys.executable, "-c", hold, path], stdout=subprocess.PIPE, text=True)
    assert node1.stdout.readline() == "held\n"
    read = shards.folder.liveness._read
    monkeypatch.setattr(shards.folder.liveness, "_read", lambda p: "" if p == "/proc/locks" else read(p))
    try:
        (message,) = acquire(folder, "qeb-run", grace_s=1.0, say=lambda line: None)
        assert "is gone (no such process); its lock is held from another host: joining run qeb-run there" in message
        with pytest.raises(ResumeError) as refused:                      # the folder is still one run's alone
            acquire(folder, "another-run", grace_s=1.0, say=lambda line: None)
        assert "processes not visible from here of run qeb-run still hold" in str(refused.value)
        assert "Stop them (on another host, or in a container of their own) and run again" in str(refused.value)
    finally:
        node1.kill()
        node1.wait()
