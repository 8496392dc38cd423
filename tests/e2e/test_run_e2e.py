"""End to end: `steerbench run --all` against simulated endpoints on loopback, then aggregate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from tests.helpers import all_bytes_under, expected_accuracy

from steerbench.cli import main


def run_cli(*args: str) -> object:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def run_all(study: dict[str, Path], *extra: str):
    return run_cli(
        "run",
        "--all",
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
        "--log-root",
        str(study["logs"]),
        "--workers",
        "1",
        *extra,
    )


def test_full_grid_exact_scores_and_csv(study, fleet):
    result = run_all(study)
    assert result.exit_code == 0, result.output
    assert "10 done, 0 failed" in result.output

    # every endpoint answered only its own cells: 2 tasks x 4 samples, with its own key
    for endpoint in fleet.endpoints:
        assert endpoint.stats.completions == 8, endpoint.multiplier

    csv = study["root"] / "out.csv"
    agg = run_cli(
        "aggregate",
        "--log-root",
        str(study["logs"]),
        "--output",
        str(csv),
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
    )
    assert agg.exit_code == 0, agg.output
    assert "missing" not in agg.output
    frame = pd.read_csv(csv, dtype={"multiplier": str})
    assert len(frame) == 10
    for _, row in frame.iterrows():
        assert row["status"] == "success"
        assert row["n_samples"] == 4
        assert row["accuracy"] == pytest.approx(expected_accuracy(float(row["multiplier"]))), row.to_dict()
    # the columns of the original study, then provenance
    for column in [
        "benchmark",
        "subset",
        "multiplier",
        "category",
        "n_samples",
        "refusal_rate",
        "accuracy",
        "stderr",
        "final_acc",
        "inspect_evals/truthfulness",
        "status",
        "completed_samples",
        "eval_name",
        "task_version",
        "model",
        "log_file",
        "started_at",
        "completed_at",
        "total_tokens",
    ]:
        assert column in frame.columns
    assert set(frame["model"]) == {
        f"openai-api/steer_m{m}/simulated-steered-model" for m in ("n1p0", "n0p5", "0p0", "0p5", "1p0")
    }


def test_logs_land_in_category_and_multiplier_folders(study):
    assert run_all(study).exit_code == 0
    folders = sorted(str(p.relative_to(study["logs"])) for p in study["logs"].glob("*/multiplier_*") if p.is_dir())
    labels = ["-0.5", "-1.0", "0.0", "0.5", "1.0"]
    assert folders == sorted([f"Knowledge/multiplier_{m}" for m in labels] + [f"Math/multiplier_{m}" for m in labels])


def test_no_key_is_written_or_printed(study, fleet):
    result = run_all(study)
    agg = run_cli("aggregate", "--log-root", str(study["logs"]), "--output", str(study["root"] / "data.csv"))
    keys = [e.key.encode() for e in fleet.endpoints]
    for path, data in all_bytes_under(study["root"]):
        if path.name == "deployments.jsonl":
            continue
        for key in keys:
            assert key not in data, f"key found in {path}"
    for key in keys:
        assert key.decode() not in result.output + agg.output


def test_rerun_resumes_without_new_requests(study, fleet):
    assert run_all(study).exit_code == 0
    before = {e.multiplier: e.stats.completions for e in fleet.endpoints}
    again = run_all(study)
    assert again.exit_code == 0, again.output
    assert {e.multiplier: e.stats.completions for e in fleet.endpoints} == before


def test_shots_take_effect_in_the_prompt(study, fleet):
    """Capitals has shots=2 in the toy benchmarks.jsonl; its task default is 3."""
    from inspect_ai.log import list_eval_logs, read_eval_log

    assert run_all(study, "--benchmark", "Capitals").exit_code == 0
    logs = list_eval_logs(str(study["logs"] / "Knowledge"), recursive=True)
    assert logs
    for info in logs:
        log = read_eval_log(info)
        assert log.eval.task_args["fewshot"] == 2
        for sample in log.samples:
            assert sample.input.count("Example:") == 2


def test_multiplier_filter_and_single_process_isolation(study, fleet):
    result = run_all(study)  # warm nothing; then a filtered run of one multiplier on a fresh root
    assert result.exit_code == 0
    fresh = study["root"] / "fresh"
    counts = {e.multiplier: e.stats.completions for e in fleet.endpoints}
    out = run_cli(
        "run",
        "--multiplier",
        "0.5",
        "--multiplier",
        "-1",
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
        "--log-root",
        str(fresh),
        "--workers",
        "1",
    )
    assert out.exit_code == 0, out.output
    delta = {e.multiplier: e.stats.completions - counts[e.multiplier] for e in fleet.endpoints}
    assert delta == {-1.0: 8, -0.5: 0, 0.0: 0, 0.5: 8, 1.0: 0}


def test_worker_processes_give_the_same_scores(study, fleet):
    result = run_cli(
        "run",
        "--all",
        "--deployments",
        str(study["deployments"]),
        "--benchmarks",
        str(study["benchmarks"]),
        "--log-root",
        str(study["logs"]),
        "--workers",
        "2",
        "--benchmark",
        "Arithmetic",
        "--max-connections",
        "2",
    )
    assert result.exit_code == 0, result.output
    from steerbench.results.aggregate import aggregate

    rows = aggregate(str(study["logs"])).rows
    assert len(rows) == 5
    for row in rows:
        assert row["accuracy"] == pytest.approx(expected_accuracy(float(row["multiplier"])))
    assert max(e.stats.peak_in_flight for e in fleet.endpoints) <= 2


def test_dry_run_sends_nothing_and_writes_nothing(study, fleet):
    result = run_all(study, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "10 cell(s)" in result.output
    assert "<key hidden>" in result.output
    assert all(e.stats.requests == 0 for e in fleet.endpoints)
    assert not study["logs"].exists()
    for endpoint in fleet.endpoints:
        assert endpoint.key not in result.output


def test_env_var_keys_are_resolved_late(study, fleet, monkeypatch):
    lines = []
    for i, endpoint in enumerate(fleet.endpoints):
        monkeypatch.setenv(f"SIM_KEY_{i}", endpoint.key)
        lines.append({"multiplier": repr(endpoint.multiplier), "url": endpoint.url, "key": f"${{SIM_KEY_{i}}}"})
    study["deployments"].write_text("".join(json.dumps(line) + "\n" for line in lines))
    original = study["deployments"].read_text()
    assert run_all(study, "--benchmark", "Arithmetic").exit_code == 0
    assert study["deployments"].read_text() == original  # never written back
    monkeypatch.delenv("SIM_KEY_0")
    missing = run_all(study, "--benchmark", "Arithmetic")
    assert missing.exit_code == 2
    assert "SIM_KEY_0" in missing.output and "line 1" in missing.output


def test_preflight_names_a_down_endpoint_and_runs_nothing(study, fleet):
    fleet.endpoints[1].stop()
    result = run_all(study)
    assert result.exit_code == 1
    assert "multiplier -0.5" in result.output and "unreachable" in result.output
    assert sum(e.stats.requests for e in fleet.endpoints if e is not fleet.endpoints[1]) == 0
    assert not any(study["logs"].glob("*/multiplier_*/*.eval"))


def test_model_is_required_when_the_endpoint_lists_several(study, fleet, monkeypatch):
    import steerbench.execution.endpoints as endpoints

    served = fleet.endpoints[0]
    original = endpoints.probe_endpoint

    def two_models(deployment, key, timeout=10.0):
        status = original(deployment, key, timeout)
        if deployment.multiplier.value == served.multiplier and not deployment.model:
            return endpoints.EndpointStatus(
                deployment,
                False,
                None,
                ("a", "b"),
                1.0,
                f'multiplier {deployment.multiplier.label}: lists a, b; set "model"',
            )
        return status

    monkeypatch.setattr(endpoints, "probe_endpoint", two_models)
    result = run_all(study)
    assert result.exit_code == 1
    assert 'set "model"' in result.output
