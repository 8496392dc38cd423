"""Cell-level exclusion (issue 16): two runs with different shard splits on one log root never
run one cell at once; the second leaves out the cells the first holds, and says so.

The Slurm lane (tests/slurm) checks the same with real job arrays; this is the fast version.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from steerbench.core.plan import shard_of
from steerbench.sim.simulator import SimulatedFleet, message_text
from tests.e2e.test_faults import (  # noqa: F401  (_fast_retries: Inspect's state in tmp_path)
    _fast_retries,
    assert_complete_grid,
    eval_logs,
    mixed_category_study,
    run_in_process,
    run_subprocess,
    wait_until,
)
from tests.helpers import toy_responder


def test_two_shard_splits_never_run_one_cell_at_once(tmp_path: Path) -> None:
    """Shard 1/2 (Capitals at m=0.0, whose answers are held back) and, while it runs, shard 1/1
    (the whole grid) on the same root: 1/1 runs only Arithmetic and names the run that holds
    Capitals; every sample is asked once; a re-run sends nothing; the folder's eval-set.json
    lists both tasks."""
    from steerbench.core.config import Multiplier
    from steerbench.core.plan import Cell

    def shard_of_benchmark(name: str) -> int:
        return shard_of(Cell(name, "", "Mixed", Multiplier(0.0, "0.0"), "", {}, {}, {}, None, None), 2)

    assert (shard_of_benchmark("Capitals"), shard_of_benchmark("Arithmetic")) == (0, 1)  # shard 1/2: Capitals
    release = threading.Event()

    def held_back(multiplier: float, messages: list, body: dict) -> str:
        if "capital of" in message_text(messages[-1]):  # the first run's cell: until the second has run
            release.wait(90)
        return toy_responder(multiplier, messages, body)

    with SimulatedFleet([0.0], held_back) as fleet:
        study = mixed_category_study(tmp_path, fleet.endpoints)  # both benchmarks in one folder
        endpoint = fleet.endpoints[0]
        first = run_subprocess(study, "--shard", "1/2", "--workers", "1", "--max-connections", "1", wait=False)
        try:
            wait_until(lambda: endpoint.stats.requests >= 1, first, "the first request")
            second = run_in_process(study, "--shard", "1/1", "--max-connections", "1")
            still_running = first.poll() is None
        finally:
            release.set()
            output, _ = first.communicate(timeout=120)
        assert first.returncode == 0, output
        assert still_running
        # the second run left Capitals to the first, said so in one line, and ran Arithmetic
        skip = f"skip: Capitals m=0.0 is being run by pid {first.pid} on {socket.gethostname()}; re-run to pick it up"
        assert skip in second.output, second.output
        assert second.exit_code == 1, second.output  # not all of its cells are done: re-run
        assert "skip:" not in output  # the first run had its cell before the second started
        # every sample asked once, whichever run asked it
        assert sum(endpoint.stats.prompts.values()) == endpoint.stats.completions == 8
        assert set(endpoint.stats.prompts.values()) == {1}, endpoint.stats.prompts
        assert len(eval_logs(study["logs"])) == 2
        assert_complete_grid(study["logs"], [0.0])

        # a re-run of the whole grid finds both done: nothing sent, exit 0
        again = run_in_process(study, "--shard", "1/1")
        assert again.exit_code == 0, again.output
        assert "skip:" not in again.output
        assert endpoint.stats.completions == 8

    # shards share the folder: its Inspect manifest lists both tasks, not the last writer's only
    (manifest,) = study["logs"].rglob("eval-set.json")
    assert sorted(t["name"] for t in json.loads(manifest.read_text())["tasks"]) == ["arithmetic", "capitals"]
