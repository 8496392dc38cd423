"""The `steerbench` click group: adds one command per module of steerbench.cli.

Nothing heavy is imported here or by the command modules at import time (Inspect is imported
inside the commands that need it), so `steerbench --help` stays fast.
"""

from __future__ import annotations

import click

from . import aggregate, check, demo, multipliers, prefetch, report, run, serve, simulate, status, vector


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="steerbench")
def main() -> None:
    """Benchmark steered models across steering multipliers with Inspect."""


for _module in (run, aggregate, report, demo, simulate, status, check, multipliers, prefetch, serve, vector):
    main.add_command(_module.command)


if __name__ == "__main__":
    main()
