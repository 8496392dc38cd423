"""`steerbench prefetch`: download every dataset the benchmarks need into the local caches, once."""

from __future__ import annotations

import sys

import click

from .options import EXIT_FAILED, friendly_errors, synthetic_data_option, synthetic_gpqa_sha256
from .output import print_prefetch, say


@click.command()
@click.option("--benchmarks", default="benchmarks.jsonl", show_default=True, help="Benchmarks file.")
@synthetic_data_option
@friendly_errors
def prefetch(benchmarks: str, synthetic_data: bool) -> None:
    """Download every dataset the benchmarks need into the local caches, once.

    Afterwards runs can set HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1. Reports each
    benchmark as cached, downloaded or failed; exits 1 if any failed."""
    from ..execution.prefetch import prefetch as run_prefetch
    from ..execution.prefetch import summary

    statuses = run_prefetch(benchmarks, say=say, trust_gpqa_sha256=synthetic_gpqa_sha256(synthetic_data))
    print_prefetch(statuses, summary(statuses))
    if any(s.state == "failed" for s in statuses):
        sys.exit(EXIT_FAILED)
    say("runs can now read the datasets offline: HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 steerbench run ...")


command = prefetch
