#!/usr/bin/env python3
"""Check, without a GPU and without importing vLLM, that a vLLM release has every place steerbench's plugin patches.

    python scripts/check_vllm_patch_points.py --installed          # the vLLM of this environment
    python scripts/check_vllm_patch_points.py --newest             # download the newest `vllm` wheel (no deps) and read it
    python scripts/check_vllm_patch_points.py path/to/vllm-X.whl   # a wheel, or a folder holding the `vllm` package

Exit 1 when a release that steerbench's `serve` extra allows (pyproject.toml) lacks a patch point;
a release outside that range is reported, not failed (that is why the range stops where it does).
Where the package index cannot be reached, `--newest` says so and is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from steerbench.serve.patch_points import FIXED, PER_REQUEST, Report, check_tree, check_wheel  # noqa: E402


def serve_range() -> Requirement:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return next(Requirement(line) for line in extras["serve"] if Requirement(line).name == "vllm")


def installed_root() -> Path | None:
    spec = importlib.util.find_spec("vllm")
    return Path(spec.origin).parent.parent if spec and spec.origin else None


def download_newest(folder: Path) -> Path | str:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-q",
        "-d",
        str(folder),
        "vllm",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    wheels = sorted(folder.glob("vllm-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        return f"pip download vllm failed: {last}"
    return wheels[-1]


def judge(report: Report, allowed: Requirement) -> bool:
    """True when this release is fine for steerbench: outside the allowed range, or inside it with every patch point."""
    version = Version(report.version.split("+")[0]) if report.version != "?" else None
    inside = version is not None and allowed.specifier.contains(version, prereleases=True)
    for line in report.lines():
        print(line)
    complete = report.supports(FIXED) and report.supports(PER_REQUEST)
    print(
        f"  steerbench[serve] allows {allowed.specifier}: this release is {'inside' if inside else 'outside'} it"
        + ("" if complete or not inside else " -- FAIL: the allowed range includes a release the plugin cannot patch")
    )
    return complete or not inside


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="vLLM wheels, or folders holding the vllm package")
    parser.add_argument("--installed", action="store_true", help="the vLLM importable here")
    parser.add_argument("--newest", action="store_true", help="download the newest vllm wheel (no dependencies)")
    parser.add_argument("--cache", type=Path, default=None, help="where --newest keeps the wheel")
    args = parser.parse_args()
    allowed = serve_range()
    reports: list[Report] = []
    for path in args.paths:
        reports.append(check_wheel(path) if path.suffix == ".whl" else check_tree(path))
    if args.installed:
        root = installed_root()
        if root is None:
            print("installed vLLM: SKIPPED, reason: vllm is not installed in this environment")
        else:
            reports.append(check_tree(root))
    if args.newest:
        folder = args.cache or Path(tempfile.mkdtemp(prefix="vllm-wheel-"))
        folder.mkdir(parents=True, exist_ok=True)
        wheel = download_newest(folder)
        if isinstance(wheel, str):
            print(f"newest vLLM wheel: SKIPPED, reason: {wheel}")
        else:
            reports.append(check_wheel(wheel))
    if not reports:
        parser.error("nothing to check: give a wheel or folder, --installed or --newest")
    results = [judge(report, allowed) for report in reports]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
