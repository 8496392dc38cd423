"""The `steerbench` command line: a thin click group (steerbench.cli.main), one module per command."""

from .main import main

__all__ = ["main"]
