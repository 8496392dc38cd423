"""The static check of vLLM's patch points, on small vLLM-shaped source trees and wheels made here."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from steerbench.serve.patch_points import FIXED, PER_REQUEST, check_tree, check_wheel
from tests.helpers import REPO

LOADER = """
class BaseModelLoader:
    def load_model(self, vllm_config, model_config, prefix=""):
        return None
"""
RUNNER = """
class GPUModelRunner(LoRAModelRunnerMixin):
    def __init__(self):
        self.requests: dict = {}
        self.input_batch = InputBatch()

    def execute_model(self, scheduler_output):
        pass

    def _prepare_inputs(self, scheduler_output, num_scheduled_tokens):
        pass

    def _model_forward(self, input_ids=None, positions=None):
        pass
"""
BATCH = """
class InputBatch:
    @property
    def req_ids(self):
        return []

    @property
    def num_reqs(self):
        return 0

    def __init__(self):
        self.num_computed_tokens_cpu = self.num_computed_tokens_cpu_tensor.numpy()
        self.num_prompt_tokens = self.num_prompt_tokens_cpu_tensor.numpy()
"""
CPU_RUNNER = "class CPUModelRunner(GPUModelRunner):\n    pass\n"


def release(version: str, runner: str = RUNNER, cpu_runner: str | None = CPU_RUNNER) -> dict[str, str]:
    files = {
        "vllm/_version.py": f"__version__ = version = '{version}'\n",
        "vllm/model_executor/model_loader/base_loader.py": LOADER,
        "vllm/v1/worker/gpu_model_runner.py": runner,
        "vllm/v1/worker/gpu_input_batch.py": BATCH,
    }
    if cpu_runner is not None:
        files["vllm/v1/worker/cpu_model_runner.py"] = cpu_runner
    return files


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def write_wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_a_release_with_every_patch_point_supports_both_modes(tmp_path: Path) -> None:
    report = check_tree(write_tree(tmp_path, release("0.32.0")))
    assert report.version == "0.32.0"
    assert report.supports(FIXED) and report.supports(PER_REQUEST)


def test_a_renamed_method_or_changed_signature_is_found(tmp_path: Path) -> None:
    renamed = RUNNER.replace(
        "def _prepare_inputs(self, scheduler_output, num_scheduled_tokens)",
        "def _prepare_inputs(self, scheduler_output, tokens_per_request)",
    )
    report = check_tree(write_tree(tmp_path, release("0.33.1", runner=renamed)))
    assert not report.supports(FIXED) and not report.supports(PER_REQUEST)  # both fill the table there
    bad = [f for f in report.findings if not f.ok]
    assert [f.point.member for f in bad] == ["_prepare_inputs"]
    assert "expected to start (self, scheduler_output, num_scheduled_tokens)" in bad[0].detail


def test_a_release_without_the_v1_runner_supports_neither_mode(tmp_path: Path) -> None:
    files = release("0.34.0")
    del files["vllm/v1/worker/gpu_model_runner.py"]
    report = check_wheel(write_wheel(tmp_path / "vllm-0.34.0-cp38-abi3-manylinux_2_28_x86_64.whl", files))
    assert report.version == "0.34.0"
    assert not report.supports(FIXED) and not report.supports(PER_REQUEST)
    assert any("MISSING" in line and "file not in this release" in line for line in report.lines())


def test_a_cpu_runner_that_no_longer_inherits_the_gpu_runner_breaks_both_modes(tmp_path: Path) -> None:
    report = check_tree(write_tree(tmp_path, release("0.32.0", cpu_runner="class CPUModelRunner(Base):\n    pass\n")))
    assert not report.supports(FIXED) and not report.supports(PER_REQUEST)


def test_a_runner_without_its_requests_breaks_only_per_request(tmp_path: Path) -> None:
    renamed = RUNNER.replace("self.requests", "self.request_states")
    assert renamed != RUNNER
    report = check_tree(write_tree(tmp_path, release("0.32.0", runner=renamed)))
    assert report.supports(FIXED) and not report.supports(PER_REQUEST)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_vllm_patch_points.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_script_fails_only_for_a_broken_release_inside_the_serve_range(tmp_path: Path) -> None:
    broken = release("0.33.0")
    del broken["vllm/v1/worker/gpu_input_batch.py"]
    inside = write_wheel(tmp_path / "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl", broken)
    outside = write_wheel(
        tmp_path / "vllm-0.34.0-cp38-abi3-manylinux_2_28_x86_64.whl",
        {**broken, "vllm/_version.py": "__version__ = '0.34.0'\n"},
    )
    whole = write_wheel(tmp_path / "vllm-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl", release("0.32.0"))

    failed = run_script(str(inside))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL: the allowed range includes a release the plugin cannot patch" in failed.stdout

    passed = run_script(str(outside), str(whole))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "this release is outside it" in passed.stdout and "this release is inside it" in passed.stdout
