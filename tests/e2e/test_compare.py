"""`steerbench report --compare`: two real studies (a vector and a control that changes nothing), run
through `steerbench run` against simulated endpoints, set side by side; the numbers are each
study's own, and bad --compare / --axis input is refused before anything is written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from steerbench.cli import main
from steerbench.serve.plan import ServeOptions, deployment_lines, parse_multipliers
from steerbench.serve.session import ServeRequest, build_plan
from steerbench.serve.vectors import write_safetensors
from steerbench.sim.simulator import SimulatedEndpoint, message_text
from tests.helpers import TASKS_FILE, write_jsonl

QUESTIONS = 12


def question(messages: list[dict[str, Any]]) -> int:
    return int(re.search(r"what is (\d+) \+ (\d+)", message_text(messages[-1])).group(1))


def losing(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    """The vector: questions above 12 - 2|m| go wrong."""
    number = question(messages)
    return str(11 * number) if number <= QUESTIONS - 2 * abs(multiplier) else "I don't know"


def always_right(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    """The control: no multiplier changes anything."""
    return str(11 * question(messages))


def steering(tmp: Path, multipliers: str, scale: str) -> dict[float, dict[str, Any]]:
    """`steerbench serve`'s provenance for a 4-layer model, vector norm 2.5·√8 at layer 2, residual norm 20."""
    model = tmp / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4}))
    vector = tmp / "v.safetensors"
    write_safetensors(
        vector, {"layer.2": np.full(8, 2.5, dtype=np.float32)}, {"residual_norms": json.dumps({"2": 20.0})}
    )
    options = ServeOptions(model=str(model), multipliers=parse_multipliers(multipliers), one_server=True)
    plan, _ = build_plan(ServeRequest(options, vector, None, False, tmp / "d.jsonl", tmp, True, scale=scale))
    return {float(line["multiplier"]): line["steering"] for line in deployment_lines(plan, None)}


def run_study(root: Path, responder: Any, multipliers: str, scale: str) -> Path:
    root.mkdir()
    provenance = steering(root, multipliers, scale)
    values = [float(m) for m in multipliers.split(",")]
    server = SimulatedEndpoint(0.0, responder, per_request=True).start()
    try:
        lines = [
            {**line, "steering": provenance[float(line["multiplier"])]}
            for line in server.shared_deployment_lines(values)
        ]
        deployments = write_jsonl(root / "deployments.jsonl", lines)
        benchmarks = write_jsonl(
            root / "benchmarks.jsonl",
            [
                {
                    "name": "Arithmetic",
                    "eval_name": f"{TASKS_FILE}@arithmetic",
                    "category": "Math",
                    "shots": 0,
                    "task_args": {"questions": QUESTIONS},
                }
            ],
        )
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--all",
                "--deployments",
                str(deployments),
                "--benchmarks",
                str(benchmarks),
                "--log-root",
                str(root / "logs"),
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
    finally:
        server.stop()
    return root / "logs"


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    # the vector loses 2 of 12 per unit of |m|; the control loses nothing, at other multipliers
    vector = run_study(tmp / "vector", losing, "0,1,2", "residual")
    control = run_study(tmp / "control", always_right, "0,2,4", "raw")
    return vector, control


def test_two_studies_side_by_side(studies: tuple[Path, Path], tmp_path: Path) -> None:
    vector, control = studies
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--compare",
            f"vector={vector}",
            "--compare",
            f"random={control}",
            "--out",
            str(out),
            "--margin",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "compared 2 studies: vector, random" in result.output
    page = (out / "compare.html").read_text()
    assert "data:image/png;base64," in page and "Safe ranges side by side" in page and "random" in page
    assert {p.name for p in (out / "figures").iterdir()} >= {
        "compare_headline.png",
        "compare_headline.pdf",
        "compare_output_health.png",
    }
    scores = pd.read_csv(out / "compare_scores.csv", dtype={"multiplier": str})
    accuracy = scores[scores["metric"] == "accuracy"].set_index(["study", "multiplier"])["value"]
    # each study's own numbers, at its own multipliers (labels as the deployments give them)
    assert accuracy[("vector", "0.0")] == 1 and accuracy[("vector", "1.0")] == pytest.approx(10 / 12)
    assert accuracy[("vector", "2.0")] == pytest.approx(8 / 12)
    assert accuracy[("random", "2.0")] == 1 and accuracy[("random", "4.0")] == 1 and ("random", "1.0") not in accuracy
    paired = pd.read_csv(out / "compare_paired_differences.csv", dtype={"multiplier": str})
    change = paired.set_index(["study", "multiplier"])["change"]
    assert change[("vector", "2.0")] == pytest.approx(-4 / 12) and change[("random", "4.0")] == 0
    # the same as each study's own report: the comparison adds nothing and corrects nothing anew
    own = CliRunner().invoke(
        main,
        [
            "report",
            "--log-root",
            str(vector),
            "--csv",
            str(tmp_path / "own" / "a.csv"),
            "--out",
            str(tmp_path / "own"),
            "--margin",
            "0.5",
        ],
    )
    assert own.exit_code == 0, own.output
    alone = pd.read_csv(tmp_path / "own" / "paired_differences.csv", dtype={"multiplier": str})
    mine = paired[paired["study"] == "vector"].drop(columns="study").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, alone.reset_index(drop=True), check_dtype=False)
    ranges = pd.read_csv(out / "compare_safe_range.csv", dtype={"lowest_safe": str, "highest_safe": str})
    assert set(ranges["study"]) == {"vector", "random"} and set(ranges["margin"]) == {0.5}
    control_range = ranges[ranges["study"] == "random"].iloc[0]
    assert control_range["highest_safe"] == "4.0"  # 12 unchanged pairs pass a 0.5 margin (p = 0.5^12 x Holm's 2)


def test_relative_norm_axis_uses_the_provenance(studies: tuple[Path, Path], tmp_path: Path) -> None:
    from steerbench.report.compare import Study, axis_values
    from steerbench.results.analysis import analyse

    vector, control = studies
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--compare",
            f"vector={vector}",
            "--compare",
            f"random={control}",
            "--axis",
            "relative-norm",
            "--out",
            str(tmp_path / "cmp"),
        ],
    )
    assert result.exit_code == 0, result.output
    # scale residual: m = 1 adds the residual norm; raw: |m·v| / 20 with |v| = 2.5·√8
    assert axis_values(Study("v", str(vector), analyse(str(vector))).analysis, "relative-norm") == {
        0.0: 0.0,
        1.0: 1.0,
        2.0: 2.0,
    }
    raw = axis_values(analyse(str(control)), "relative-norm")
    assert raw[4.0] == pytest.approx(4 * 2.5 * 8**0.5 / 20, abs=1e-5) and raw[0.0] == 0.0


def test_a_single_report_labels_its_axis_in_residual_units(studies: tuple[Path, Path]) -> None:
    from steerbench.report.figures import accuracy_by_benchmark, output_health_by_multiplier
    from steerbench.results.analysis import analyse

    analysis = analyse(str(studies[1]))  # scale raw: |m·v| / ‖h‖ = 0.354 m
    for figure in (accuracy_by_benchmark(analysis), output_health_by_multiplier(analysis)):
        ax = figure.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0\n0", "2.0\n0.71", "4.0\n1.4"]
        assert "residual norm" in ax.get_xlabel()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "only=logs"], "needs at least two studies"),
        (["--compare", "a=x", "--compare", "nolabel"], "expected LABEL=LOG_ROOT"),
        (["--compare", "a=x", "--compare", "a=y"], "given twice"),
        (["--axis", "relative-norm"], "only used with --compare"),
        (["--compare", "a={tmp}/nowhere", "--compare", "b={tmp}/nowhere2"], "no such log root"),
    ],
)
def test_bad_compare_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, ["report", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert "--compare" in result.output or "--axis" in result.output
    assert not out.exists()


def test_a_study_without_norms_cannot_use_the_relative_axis(studies: tuple[Path, Path], tmp_path: Path) -> None:
    from steerbench.report.compare import Study, check_axis
    from steerbench.core.config import ConfigError
    from steerbench.results.analysis import analyse

    analysis = analyse(str(studies[0]))
    for cell in analysis.cells.values():
        cell.row["steering_relative_norm"] = None  # hand-written deployments carry no steering object
    with pytest.raises(ConfigError, match="has no steering_relative_norm for multiplier"):
        check_axis([Study("hand", "logs", analysis)], "relative-norm")
