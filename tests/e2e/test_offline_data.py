"""The 12 real inspect_evals benchmarks, offline, on steerbench's synthetic data.

One subprocess (``datasets`` and ``inspect_evals`` read HF_HOME, the offline flags and
INSPECT_EVALS_CACHE_DIR at import, so they must start with the offline environment)
runs every task with ``inspect_ai.eval`` against a small OpenAI-compatible server
started here, for a model that is always right, one that is always wrong and one that
is right on every other sample. All Hugging Face / GitHub / blob-storage traffic would
go through a proxy that this server traps, so any network attempt is seen.

Run directly (``python tests/e2e/test_offline_data.py CONFIG.json``) this file is that
subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steerbench.sim.offline_data import (
    BENCHMARKS,
    EXPECTED_METRICS,
    benchmark_of,
    identify,
    prepare_offline_cache,
    respond,
    samples_of,
)
from tests.helpers import REPO, STUBS, send_json

API_KEY = "offline-test-key"
# (label, benchmark of the samples): one eval per label and model
LABELS = {
    "mmlu_0_shot": "mmlu_0_shot",
    "ifeval": "ifeval",
    "arc_easy": "arc_easy",
    "arc_challenge": "arc_challenge",
    "gpqa_diamond": "gpqa_diamond",
    "humaneval": "humaneval",
    "mbpp": "mbpp",
    "gsm8k": "gsm8k",
    "commonsense_qa": "commonsense_qa",
    "truthfulqa": "truthfulqa",
    "sycophancy": "sycophancy",
    "xstest_safe": "xstest",
    "xstest_unsafe": "xstest",
}
MODELS = ("right", "wrong", "mixed")


def mixed_is_right(messages: list[dict[str, Any]]) -> bool:
    """The "mixed" model is right on the samples at even positions of their benchmark."""
    found = identify(messages)
    if found is None or found.sample is None:
        return True
    position = [s.key for s in samples_of(found.benchmark)].index(found.sample.key)
    return position % 2 == 0


# ---------------------------------------------------------------- the fake server


class FakeOpenAI(ThreadingHTTPServer):
    """POST /v1/chat/completions answered by `respond`; the model name picks right/wrong.

    Also a trap proxy: CONNECT requests and absolute-URL requests (what HTTP(S)_PROXY
    sends) are recorded in `proxied` and refused.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (model, benchmark)
        self.unrecognised: list[str] = []
        self.proxied: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        send_json(self, status, payload)

    def _trapped(self) -> bool:
        if self.command == "CONNECT" or self.path.startswith(("http://", "https://")):
            with self.server.lock:
                self.server.proxied.append(f"{self.command} {self.path}")
            self._send(403, {"error": "network access attempted during an offline test"})
            return True
        return False

    def do_CONNECT(self) -> None:
        self._trapped()

    def do_GET(self) -> None:
        if self._trapped():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self._trapped():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": "not found"})
            return
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._send(401, {"error": {"message": "bad key"}})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        messages = body.get("messages", [])
        model = str(body.get("model", ""))
        correct = mixed_is_right(messages) if model == "mixed" else model != "wrong"
        text = respond(messages, correct=correct)
        bench = benchmark_of(messages)
        with self.server.lock:
            self.server.requests.append((model, bench))
            if bench is None:
                last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
                self.server.unrecognised.append(str(last.get("content"))[:200])
        self._send(
            200,
            {
                "id": f"chatcmpl-{time.monotonic_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            },
        )


# ---------------------------------------------------------------- the subprocess


def _metrics(log: Any) -> dict[str, float]:
    """{"scorer/metric": value} (other epoch reducers as "scorer[reducer]/metric")."""
    out: dict[str, float] = {}
    for score in (log.results.scores if log.results else []) or []:
        prefix = score.name if score.reducer in (None, "mean") else f"{score.name}[{score.reducer}]"
        for name, metric in score.metrics.items():
            out[f"{prefix}/{name}"] = metric.value
    return out


def run_benchmarks(config_path: str) -> None:
    """Entry point of the subprocess: create the real tasks, eval them, write results."""
    config = json.loads(Path(config_path).read_text())
    from steerbench.sim.offline_data import apply_offline_patches

    patches = apply_offline_patches()

    from inspect_ai import eval as inspect_eval
    from inspect_ai import task_with
    from inspect_evals.arc import arc_challenge, arc_easy
    from inspect_evals.commonsense_qa import commonsense_qa
    from inspect_evals.gpqa import gpqa_diamond
    from inspect_evals.gsm8k import gsm8k
    from inspect_evals.humaneval import humaneval
    from inspect_evals.ifeval import ifeval
    from inspect_evals.mbpp import mbpp
    from inspect_evals.mmlu import mmlu_0_shot
    from inspect_evals.sycophancy import sycophancy
    from inspect_evals.truthfulqa import truthfulqa
    from inspect_evals.xstest import xstest

    grader = "openai-api/local/grader"
    started = time.perf_counter()
    plain = {
        "mmlu_0_shot": mmlu_0_shot(),
        "ifeval": ifeval(),
        "arc_easy": arc_easy(),
        "arc_challenge": arc_challenge(),
        "gpqa_diamond": gpqa_diamond(),
        "gsm8k": gsm8k(fewshot=8),
        "commonsense_qa": commonsense_qa(),
        "truthfulqa": truthfulqa(),
        "sycophancy": sycophancy(scorer_model=grader),
        "xstest_safe": xstest(subset="safe", scorer_model=grader),
        "xstest_unsafe": xstest(subset="unsafe", scorer_model=grader),
    }
    # humaneval takes its sandbox as a task argument; mbpp hard-codes "docker", so it
    # is overridden with eval(sandbox="local") below.
    code = {"humaneval": humaneval(sandbox="local"), "mbpp": mbpp()}
    created = time.perf_counter() - started

    def tagged(tasks: dict[str, Any]) -> list[Any]:
        return [task_with(t, metadata={**(t.metadata or {}), "sb_label": label}) for label, t in tasks.items()]

    models = [f"openai-api/local/{m}" for m in config["models"]]
    common = dict(model=models, log_dir=config["log_dir"], display="none", log_level="warning", max_tasks=32)
    logs = list(inspect_eval(tagged(plain), **common))
    logs += inspect_eval(tagged(code), sandbox="local", **common)

    results = []
    for log in logs:
        results.append(
            {
                "label": log.eval.metadata["sb_label"],
                "model": log.eval.model.split("/")[-1],
                "status": log.status,
                "error": log.error.message if log.error else None,
                "samples": log.results.total_samples if log.results else 0,
                "metrics": _metrics(log),
            }
        )
    Path(config["out"]).write_text(
        json.dumps(
            {
                "patches": patches,
                "results": results,
                "task_creation_seconds": created,
                "seconds": time.perf_counter() - started,
            },
            indent=2,
        )
    )


def subprocess_env(offline: dict[str, str], server_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "INSPECT_", "OPENAI_", "ANTHROPIC_", "LOCAL_"))
        and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    }
    env.update(offline)
    env.update(
        {
            "LOCAL_BASE_URL": server_url + "/v1",
            "LOCAL_API_KEY": API_KEY,
            # every other host goes to the trap proxy
            "HTTP_PROXY": server_url,
            "HTTPS_PROXY": server_url,
            "http_proxy": server_url,
            "https_proxy": server_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONPATH": os.pathsep.join([str(STUBS), str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
            "INSPECT_LOG_LEVEL": "warning",
            "INSPECT_DISPLAY": "none",
        }
    )
    return env


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("offline")
    offline = prepare_offline_cache(root / "cache")
    with FakeOpenAI() as server:
        config = {"models": list(MODELS), "log_dir": str(root / "logs"), "out": str(root / "results.json")}
        (root / "config.json").write_text(json.dumps(config))
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(root / "config.json")],
            env=subprocess_env(offline, server.url),
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall = time.perf_counter() - started
        assert proc.returncode == 0, f"benchmark subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        out = json.loads(Path(config["out"]).read_text())
        with server.lock:
            out["requests"] = list(server.requests)
            out["unrecognised"] = list(server.unrecognised)
            out["proxied"] = list(server.proxied)
    out["wall_seconds"] = wall
    out["stderr"] = proc.stderr
    return out


def _result(run: dict[str, Any], label: str, model: str) -> dict[str, Any]:
    (found,) = [r for r in run["results"] if r["label"] == label and r["model"] == model]
    assert found["status"] == "success", found
    return found


# ---------------------------------------------------------------- tests: the real tasks


@pytest.mark.parametrize("label", list(LABELS))
def test_all_right_scores_top_and_all_wrong_scores_bottom(offline_run: dict[str, Any], label: str) -> None:
    right, wrong = _result(offline_run, label, "right"), _result(offline_run, label, "wrong")
    assert right["samples"] > 0
    for (scorer, metric), (top, bottom) in EXPECTED_METRICS[label].items():
        key = f"{scorer}/{metric}"
        assert right["metrics"][key] == pytest.approx(top), (key, right["metrics"])
        assert wrong["metrics"][key] == pytest.approx(bottom), (key, wrong["metrics"])


def _mixed_fraction(benchmark: str, subset: str | None = None) -> float:
    rows = samples_of(benchmark)
    picked = [i for i, s in enumerate(rows) if subset is None or s.row.get("label") == subset]
    return sum(1 for i in picked if i % 2 == 0) / len(picked)


@pytest.mark.parametrize("label", list(LABELS))
def test_mixed_answers_give_the_exact_fraction(offline_run: dict[str, Any], label: str) -> None:
    mixed = _result(offline_run, label, "mixed")["metrics"]
    if label.startswith("xstest"):
        subset = label.split("_")[1]
        right_fraction = _mixed_fraction("xstest", subset)
        # safe: right = comply, so refusals are the wrong ones; unsafe: refusals are right
        expected = (1 - right_fraction) * 100 if subset == "safe" else right_fraction * 100
        assert mixed["model_graded_qa/refusal_rate"] == pytest.approx(expected)
        return
    fraction = _mixed_fraction(LABELS[label])
    (scorer, metric), (top, bottom) = next(iter(EXPECTED_METRICS[label].items()))
    assert mixed[f"{scorer}/{metric}"] == pytest.approx(bottom + (top - bottom) * fraction), mixed


def test_no_network_and_every_request_recognised(offline_run: dict[str, Any]) -> None:
    assert offline_run["proxied"] == []
    assert offline_run["unrecognised"] == []
    seen = {bench for _, bench in offline_run["requests"]}
    assert seen == set(BENCHMARKS)
    # the graders were called (XSTest's and Sycophancy's scorer_model)
    assert any(model == "grader" and bench == "xstest" for model, bench in offline_run["requests"])
    assert any(model == "grader" and bench == "sycophancy" for model, bench in offline_run["requests"])
    assert len(offline_run["patches"]) == 3, offline_run["patches"]


# ---------------------------------------------------------------- tests: no Inspect needed


def test_prepare_offline_cache_layout_and_idempotence(tmp_path: Path) -> None:
    env = prepare_offline_cache(tmp_path)
    assert env["HF_DATASETS_OFFLINE"] == env["HF_HUB_OFFLINE"] == "1"
    datasets_dir = Path(env["HF_DATASETS_CACHE"])
    for folder in [
        "cais___mmlu/all",
        "allenai___ai2_arc/ARC-Easy",
        "allenai___ai2_arc/ARC-Challenge",
        "tau___commonsense_qa/default",
        "openai___gsm8k/default-data_dir=main",
        "openai___openai_humaneval/default",
        "google-research-datasets___mbpp/full",
        "google-research-datasets___mbpp/sanitized",
        "google___if_eval/default",
        "truthfulqa___truthful_qa/multiple_choice",
        "walledai___xs_test/default",
    ]:
        (version,) = (datasets_dir / folder).iterdir()
        (revision,) = version.iterdir()
        assert (revision / "dataset_info.json").is_file(), folder
        assert list(revision.glob("*.arrow")), folder
    cache = Path(env["INSPECT_EVALS_CACHE_DIR"])
    assert (cache / "gpqa" / "gpqa_diamond.csv").is_file()
    assert len(list((cache / "sycophancy").glob("anthropic_sycophancy_are_you_sure_*.jsonl"))) == 1

    marker = datasets_dir / "cais___mmlu" / "keep-me"
    marker.write_text("")
    started = time.perf_counter()
    assert prepare_offline_cache(tmp_path) == env
    assert time.perf_counter() - started < 1.0
    assert marker.exists()  # nothing was rewritten


if __name__ == "__main__":
    run_benchmarks(sys.argv[1])
