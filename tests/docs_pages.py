"""Reading the documentation's Markdown: fenced blocks (with the marker comment above them) and
the `steerbench` command lines they and the inline code spans show. Shared by the tests that keep
README.md, CONTRIBUTING.md and docs/ true."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO

DOCS = REPO / "docs"
FENCE = re.compile(r"^(`{3,})(\w*)(.*)$")
INLINE_COMMAND = re.compile(r"`(steerbench [^`]+)`")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    title: str  # from `title="..."`, else ""
    marker: str  # the `<!-- tested: ... -->` or `<!-- not-run: ... -->` comment just above, else ""
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def pages() -> list[Path]:
    """Every page a reader is sent to: the README, CONTRIBUTING.md and the site."""
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith(opening.group(1)))
        title = re.search(r'title="([^"]+)"', opening.group(3))
        above = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = above if re.match(r"<!-- (tested|not-run):", above) else ""
        found.append(
            Block(
                page,
                index + 1,
                opening.group(2),
                title.group(1) if title else "",
                marker,
                "\n".join(lines[index + 1 : end]),
            )
        )
        index = end + 1
    return found


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell snippet: continuation lines joined, comments dropped,
    split at `&&`, `||`, `;` and `|`."""
    commands: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if set(token) <= set(";&|"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [c for c in commands if c]


def steerbench_commands(page: Path) -> list[tuple[str, list[str]]]:
    """(where, argv after `steerbench`) for each steerbench command the page shows, in shell
    blocks or inline code."""
    found = []
    for block in blocks(page):
        if block.language in ("bash", "sh", "console", "shell"):
            for argv in shell_commands(block.text):
                while argv and "=" in argv[0] and not argv[0].startswith("-"):  # VAR=value before the command
                    argv = argv[1:]
                if argv and Path(argv[0]).name == "steerbench":
                    found.append((block.where(), argv[1:]))
    text = page.read_text(encoding="utf-8")
    outside_blocks = re.sub(r"^(`{3,}).*?^\1", "", text, flags=re.S | re.M)
    for match in INLINE_COMMAND.finditer(outside_blocks):
        with_tail = match.group(1)
        try:
            argv = shlex.split(with_tail)
        except ValueError:
            continue
        found.append((f"{page.relative_to(REPO)} `{with_tail}`", argv[1:]))
    return found
