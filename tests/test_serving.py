"""How the launcher starts a judge server (shards.serving.vllm), without starting one: its command, its
environment, and what it says when the server never comes up (a real one runs in tests/test_served.py)."""

import os
import subprocess
import sys
import time

import pytest

from conftest import REPO
from shards.config import load_config
from shards.serving.vllm import ServerFailed, judge_server, server_command, server_env

SERVED_GPU = os.path.join(REPO, "configs", "qwen-image-edit-2511-served.yaml")
SERVED_CPU = os.path.join(REPO, "configs", "demo-served.yaml")


def test_the_server_serves_the_judge_under_its_own_name_on_loopback_with_the_configs_dtype():
    score = load_config(SERVED_GPU).score
    command = server_command(score, "/env/bin/python")
    assert command[:3] == ["/env/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == command[command.index("--served-model-name") + 1] == score.model
    assert command[command.index("--host") + 1] == "127.0.0.1" and "--data-parallel-size" in command
    assert command[command.index("--dtype") + 1] == "bfloat16"
    # The dtype is score.dtype's, which the run's identity records (start.args may not set it: tests/test_config.py).
    own = load_config(SERVED_GPU, {"score.dtype": "float16", "score.trust_remote_code": True})
    command = server_command(own.score, "p")
    assert command[command.index("--dtype") + 1] == "float16" and "--trust-remote-code" in command


def test_on_the_cpu_the_server_gets_the_cpu_builds_settings_and_on_gpus_its_share(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cpu = server_env(load_config(SERVED_CPU).score, "cpu")
    assert cpu["VLLM_TARGET_DEVICE"] == "cpu" and cpu["VLLM_NO_USAGE_STATS"] == "1"
    two = load_config(SERVED_GPU, {"score.server.start.gpus": 2}).score
    assert server_env(two, "cuda")["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert server_env(two, "cuda", visible="4,5,6,7")["CUDA_VISIBLE_DEVICES"] == "4,5"      # the judge's share
    assert "CUDA_VISIBLE_DEVICES" not in server_env(load_config(SERVED_GPU).score, "cuda")


def test_a_server_that_exits_before_it_is_ready_stops_the_launch_with_its_logs_last_lines(tmp_path):
    # A stand-in interpreter that prints and exits: what a server failing to load its model does.
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('ValueError: no such model', flush=True)\nsys.exit(3)\n")
    fake.chmod(0o755)
    score = load_config(SERVED_CPU, {"score.server.start.port": 1}).score
    with pytest.raises(ServerFailed, match=r"(?s)exited with status 3 before it was ready.*no such model"):
        with judge_server(score, "cpu", str(fake), str(tmp_path / "serve.log"), print):
            pass


def test_a_server_that_never_answers_is_stopped_after_its_timeout(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport time\nprint('loading', flush=True)\ntime.sleep(600)\n")
    fake.chmod(0o755)
    score = load_config(SERVED_CPU, {"score.server.start.port": 1, "score.server.start.ready_timeout_s": 3}).score
    with pytest.raises(ServerFailed, match=r"(?s)did not answer .*/health within 3s.*loading"):
        with judge_server(score, "cpu", str(fake), str(tmp_path / "serve.log"), print):
            pass
    left = subprocess.run(["pgrep", "-f", str(fake)], capture_output=True, text=True).stdout
    assert not left.strip()                                       # stopped, its whole process group


def test_a_port_another_server_answers_on_is_refused_before_starting_never_taken_for_ours(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Healthy(BaseHTTPRequestHandler):         # another run's judge server, or anything answering /health
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    other = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport time\nprint('loading', flush=True)\ntime.sleep(600)\n")
    fake.chmod(0o755)
    score = load_config(SERVED_CPU, {"score.server.start.port": port}).score
    try:
        with pytest.raises(ServerFailed, match=rf"port {port} .*taken.*score\.server\.start\.port"):
            with judge_server(score, "cpu", str(fake), str(tmp_path / "serve.log"), print):
                pass
    finally:
        other.shutdown()
        other.server_close()
    assert not (tmp_path / "serve.log").exists()                  # nothing was started


def test_a_port_this_user_may_not_bind_is_not_called_taken(monkeypatch):
    import socket

    from shards.serving.vllm import port_taken

    def refuse(self, address):                    # what binding port 80 as another user than root meets
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(socket.socket, "bind", refuse)
    assert port_taken(80) is False                # the server's own log then says why it could not listen


def test_a_port_a_stopped_server_left_in_time_wait_is_free_for_the_next_run():
    import socket

    from shards.serving.vllm import port_taken

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    assert port_taken(port)
    served.close()                      # the server closes first: its side of the connection waits (TIME_WAIT)
    listener.close()
    client.close()
    assert not port_taken(port)         # a launcher killed a moment ago: the same command runs again at once


def test_a_second_launch_on_the_same_port_while_the_first_server_starts_is_refused(tmp_path):
    # vLLM binds its port long before it listens, and two servers started together on one port both serve it (the
    # kernel shares the connections between them, measured with vLLM 0.32): neither launch would know.
    import socket
    import threading

    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport time\nprint('loading', flush=True)\ntime.sleep(600)\n")
    fake.chmod(0o755)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    first = load_config(SERVED_CPU, {"score.server.start.port": port, "score.server.start.ready_timeout_s": 8}).score
    second = load_config(SERVED_CPU, {"score.server.start.port": port, "score.server.start.ready_timeout_s": 3}).score

    def starting():
        with pytest.raises(ServerFailed, match="did not answer"):
            with judge_server(first, "cpu", str(fake), str(tmp_path / "first.log"), print):
                pass
    thread = threading.Thread(target=starting)
    thread.start()
    time.sleep(1)
    try:
        refused = rf"port {port}: another launch on this node .*score\.server\.start\.port"
        with pytest.raises(ServerFailed, match=refused):
            with judge_server(second, "cpu", str(fake), str(tmp_path / "second.log"), print):
                pass
    finally:
        thread.join()
    assert not (tmp_path / "second.log").exists()
