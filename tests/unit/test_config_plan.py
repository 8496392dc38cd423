"""Config parsing, task resolution and planning: pure functions, no network."""

from __future__ import annotations


import pytest
from tests.helpers import REPO, write_jsonl

from steerbench.core.config import ConfigError, load_benchmarks, load_deployments
from steerbench.core.plan import RunOptions, build_plan, shard_of
from steerbench.tasks.resolve import resolve_benchmarks

ROOT = REPO


def test_shipped_benchmarks_resolve_to_installed_tasks_that_accept_their_arguments():
    benchmarks = load_benchmarks(ROOT / "benchmarks.jsonl")
    assert [b.name for b in benchmarks] == [
        "MMLU",
        "IFEval",
        "ARC_Easy",
        "ARC_Challenge",
        "GPQA",
        "HumanEval",
        "MBPP",
        "GSM8K",
        "CommonSenseQA",
        "TruthfulQA",
        "Sycophancy",
        "XSTest",
    ]
    signatures = resolve_benchmarks(benchmarks)
    deployments = load_deployments(ROOT / "deployments_template.jsonl")
    plan = build_plan(deployments, benchmarks, signatures, RunOptions(all=True))
    assert len(plan.cells) == 13 * 7
    gsm8k = next(c for c in plan.cells if c.benchmark == "GSM8K")
    assert gsm8k.task_args == {"fewshot": 8}
    xstest = sorted({c.subset for c in plan.cells if c.benchmark == "XSTest"})
    assert xstest == ["safe", "unsafe"]
    grader = next(c for c in plan.cells if c.benchmark == "XSTest")
    assert grader.task_args["scorer_model"] == "anthropic/claude-3-7-sonnet-20250219"
    ifeval = next(c for c in plan.cells if c.benchmark == "IFEval")
    assert "max_tokens" not in ifeval.generate
    mmlu = next(c for c in plan.cells if c.benchmark == "MMLU")
    assert mmlu.generate == {"temperature": 0.0, "max_tokens": 1000, "timeout": 100}


def test_template_has_the_seven_multipliers():
    labels = [d.multiplier.label for d in load_deployments(ROOT / "deployments_template.jsonl")]
    assert labels == ["-1.5", "-1.0", "-0.5", "0.0", "0.5", "1.0", "1.5"]


def test_multiplier_labels_are_kept_as_written(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"multiplier": "-1.5", "url": "http://h/v1", "key": "k1"},
            {"multiplier": 0.0, "url": "http://h/v1", "key": "k2"},
            {"multiplier": 1, "url": "http://h/v1", "key": "k3"},
        ],
    )
    assert [d.multiplier.folder for d in load_deployments(path)] == [
        "multiplier_-1.5",
        "multiplier_0.0",
        "multiplier_1",
    ]


@pytest.mark.parametrize("a,b", [("0", "0.0"), ("-0", "0"), ("1.50", "1.5")])
def test_duplicate_multipliers_written_differently(tmp_path, a, b):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"multiplier": a, "url": "http://h/v1", "key": "k1"},
            {"multiplier": b, "url": "http://h/v1", "key": "k2"},
        ],
    )
    with pytest.raises(ConfigError, match="line 2, field 'multiplier'"):
        load_deployments(path)


def test_nonzero_shots_on_a_task_without_fewshot_is_an_error(tmp_path):
    path = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"name": "ARC", "eval_name": "inspect_evals/arc_easy", "category": "Reasoning", "shots": 5},
        ],
    )
    with pytest.raises(ConfigError, match=r"field 'shots'.*no few-shot parameter"):
        resolve_benchmarks(load_benchmarks(path))


def test_unknown_task_and_unknown_argument(tmp_path):
    path = write_jsonl(
        tmp_path / "b.jsonl", [{"name": "X", "eval_name": "inspect_evals/no_such_task", "category": "C"}]
    )
    with pytest.raises(ConfigError, match="line 1, field 'eval_name'"):
        resolve_benchmarks(load_benchmarks(path))
    path = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"name": "X", "eval_name": "inspect_evals/xstest", "category": "C", "subsets": [{"subsett": "safe"}]},
        ],
    )
    with pytest.raises(ConfigError, match=r"field 'subsets\[0\]'.*no argument 'subsett'"):
        resolve_benchmarks(load_benchmarks(path))


def test_shards_cover_every_cell_exactly_once():
    benchmarks = load_benchmarks(ROOT / "benchmarks.jsonl")
    deployments = load_deployments(ROOT / "deployments_template.jsonl")
    signatures = resolve_benchmarks(benchmarks)
    whole = build_plan(deployments, benchmarks, signatures, RunOptions(all=True))
    pieces = [build_plan(deployments, benchmarks, signatures, RunOptions(all=True, shard=(i, 3))) for i in (1, 2, 3)]
    keys = [c.key for p in pieces for c in p.cells]
    assert sorted(keys) == sorted(c.key for c in whole.cells)
    assert len(set(keys)) == len(keys)
    assert all(p.cells for p in pieces)
    assert shard_of(whole.cells[0], 3) == shard_of(whole.cells[0], 3)


def test_a_shared_server_is_capped_at_32_by_default_and_a_dedicated_one_is_not(tmp_path):
    from steerbench.core.plan import connection_limits, server_connections

    def deployments(shared: int, dedicated: int):
        lines = [
            {
                "multiplier": str(i),
                "url": "http://one:8000/v1/",
                "key": "k",
                "extra_body": {"vllm_xargs": {"steer_multiplier": i}},
            }
            for i in range(shared)
        ]
        lines += [{"multiplier": str(100 + i), "url": f"http://own{i}:8000/v1", "key": "k"} for i in range(dedicated)]
        return load_deployments(write_jsonl(tmp_path / "d.jsonl", lines))

    five = deployments(5, 1)
    servers = {s.url: s for s in server_connections(five, RunOptions(all=True))}
    assert (servers["http://one:8000/v1"].per_multiplier, servers["http://one:8000/v1"].at_most) == (6, 30)
    assert servers["http://one:8000/v1"].default_cap and servers["http://one:8000/v1"].cap == 32
    assert (servers["http://own0:8000/v1"].per_multiplier, servers["http://own0:8000/v1"].cap) == (20, None)
    assert connection_limits(five, RunOptions(all=True)) == {**{float(i): 6 for i in range(5)}, 100.0: 20}
    # two share: 16 each; --max-connections stays the ceiling per multiplier
    assert set(connection_limits(deployments(2, 0), RunOptions(all=True)).values()) == {16}
    assert set(connection_limits(deployments(2, 0), RunOptions(all=True, max_connections=8)).values()) == {8}
    # more multipliers than the default allows: one connection each, never zero
    assert set(connection_limits(deployments(40, 0), RunOptions(all=True)).values()) == {1}
    # an explicit cap applies to every server, shared or not; below one each it is refused
    explicit = RunOptions(all=True, max_connections_per_server=50)
    assert connection_limits(five, explicit) == {**{float(i): 10 for i in range(5)}, 100.0: 20}
    with pytest.raises(ConfigError, match="fewer than the 5 multipliers"):
        connection_limits(five, RunOptions(all=True, max_connections_per_server=4))


@pytest.mark.parametrize(
    "served, shown",
    [
        ("/home/x/models/foo", "foo"),
        ("/home/x/models/foo/", "foo"),
        ("~/models/foo", "foo"),
        ("./foo", "foo"),
        ("../models/foo", "foo"),
        ("C:\\Users\\x\\models\\foo", "foo"),
        ("org//foo", "foo"),
        ("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M"),  # a hub id stays whole
        ("tiny", "tiny"),
    ],
)
def test_model_display_name_drops_local_paths(served, shown):
    from steerbench.core.config import Multiplier, model_display_name
    from steerbench.execution.run import inspect_model_name

    assert model_display_name(served) == shown
    name = inspect_model_name(Multiplier(1.0, "1"), served)
    assert name == f"openai-api/steer_m1/{shown}" and "//" not in name and "/home/" not in name


def test_steering_provenance_model_is_shown_by_folder_name(tmp_path):
    deployments = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {
                "multiplier": 0,
                "url": "http://127.0.0.1:8000/v1",
                "key": "k",
                "model": "/home/x/models/foo",
                "steering": {
                    "model": "/home/x/models/foo",
                    "layer": 3,
                    "vector_sha256": "ab" * 32,
                    "normalized": False,
                },
            }
        ],
    )
    (deployment,) = load_deployments(deployments)
    assert deployment.model == "/home/x/models/foo"  # what the server is asked for
    assert deployment.steering["model"] == "foo"
