"""mkdocs hook: show click's `\\b` (keep-these-lines) help blocks as preformatted text.

mkdocs-click 0.9 drops the `\\b` marker and pastes the block into the page, where Markdown
re-flows it into one paragraph and reads `[--a x] [--b y]` as a reference link. The wrapper
below fences each such block instead, so the page shows it line by line, as `--help` does.
It wraps a private function of mkdocs-click; the `docs` extra pins that release.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mkdocs_click import _docs, _extension

CLICK_KEEP_LINES = "\b"


def fence_keep_lines_blocks(lines: Iterator[str]) -> Iterator[str]:
    in_block = False
    for line in lines:
        if line.strip() == CLICK_KEEP_LINES:
            in_block = True
            yield "```text"
            continue
        if in_block and not line.strip():
            in_block = False
            yield "```"
        yield line
    if in_block:
        yield "```"


def make_command_docs(**options: Any) -> Iterator[str]:
    return fence_keep_lines_blocks(_docs._recursively_make_command_docs(**options))


def on_config(config: Any) -> Any:
    _extension.make_command_docs = make_command_docs
    return config
