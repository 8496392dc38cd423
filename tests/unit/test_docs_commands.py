"""The documentation stays true: every `steerbench` command it shows parses with today's CLI, its
jsonl examples load, its CSV table names the columns written, the README's two commands are the
ones CI runs, every command block of the tutorial and how-to guides says how it is tested, and the
README fits on one screen. (The site's own links are checked by `mkdocs build --strict` in CI.)"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from tests.docs_pages import DOCS, REPO, blocks, pages, steerbench_commands

from steerbench.cli.main import main
from steerbench.core.config import load_benchmarks, load_deployments

README = REPO / "README.md"
CI = REPO / ".ci" / "run"


def _leaf(argv: list[str]) -> tuple[click.Command, list[str]] | None:
    """The command argv names, and the arguments left for it; None for a placeholder (COMMAND)."""
    command: click.Command = main
    rest = list(argv)
    while isinstance(command, click.Group):
        if rest and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        elif "make" in command.commands and rest and rest[0] not in ("-h", "--help"):
            command = command.commands["make"]  # `steerbench vector --model ...` is `vector make --model ...`
        elif rest and rest[0].isupper():
            return None
        elif rest and not rest[0].startswith("-"):
            raise AssertionError(f"no command {rest[0]!r} under {command.name!r}")
        else:
            break
    return command, rest


def _commands() -> list[tuple[str, list[str]]]:
    return [found for page in pages() for found in steerbench_commands(page)]


def test_the_pages_show_steerbench_commands() -> None:
    shown = _commands()
    assert len(shown) > 50  # the parser below found them: a change of Markdown style must not empty this test
    assert {argv[0] for _, argv in shown if argv} >= {"demo", "serve", "run", "report", "vector", "check", "status"}


@pytest.mark.parametrize(
    ("where", "argv"), _commands(), ids=lambda value: value if isinstance(value, str) else " ".join(value)
)
def test_every_command_shown_parses_with_the_cli(where: str, argv: list[str]) -> None:
    leaf = _leaf(argv)
    if leaf is None:
        return
    command, rest = leaf
    if "--" in rest:  # what follows goes to vllm serve
        rest = rest[: rest.index("--")]
    if command.name == "report" and not rest:
        return
    parser = command.make_parser(click.Context(command, info_name=command.name))
    try:
        parser.parse_args(rest)
    except click.UsageError as e:
        if isinstance(e, click.BadOptionUsage) and not isinstance(e, click.NoSuchOption) and "`" in where:
            return  # inline code may name an option without its value (`--key-env`); a block may not
        raise AssertionError(f"{where}: `steerbench {' '.join(argv)}`: {e.format_message()}") from None


def test_an_unknown_option_is_caught() -> None:
    command, rest = _leaf(["run", "--all", "--no-such-option"])
    with pytest.raises(click.NoSuchOption):
        command.make_parser(click.Context(command)).parse_args(rest)


@pytest.mark.parametrize(
    ("title", "loader"), [("deployments.jsonl", load_deployments), ("benchmarks.jsonl", load_benchmarks)]
)
def test_every_jsonl_example_loads(tmp_path: Path, title: str, loader) -> None:
    examples = [b for page in pages() for b in blocks(page) if b.title == title]
    assert examples, f"no {title} example found"
    for example in examples:
        path = tmp_path / title
        path.write_text(example.text + "\n")
        try:
            assert loader(path), example.where()
        except Exception as e:
            raise AssertionError(f"{example.where()}: {e}") from None


def test_the_csv_reference_names_exactly_the_columns_aggregate_writes() -> None:
    from steerbench.results.aggregate import KEY_COLUMNS, METRIC_COLUMNS, PROVENANCE_COLUMNS
    from steerbench.results.health import HEALTH_COLUMNS

    text = (DOCS / "reference" / "csv.md").read_text(encoding="utf-8")
    section = text.split("## `data/aggregated_inspect_logs.csv`", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| (`[^|]+`) \|", section, flags=re.M)  # a cell may name two: `a`, `b`
    documented = [name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell)]
    assert documented == KEY_COLUMNS + METRIC_COLUMNS + HEALTH_COLUMNS + PROVENANCE_COLUMNS


def _readme_block(command_start: str) -> str:
    for block in blocks(README):
        for line in block.text.splitlines():
            if line.startswith(command_start):
                return line.split("  #")[0].strip()
    raise AssertionError(f"README shows no command starting {command_start!r}")


def test_the_readme_commands_are_the_ones_ci_runs() -> None:
    ci = CI.read_text(encoding="utf-8")
    set_up = _readme_block("python3 -m venv .venv")
    extras = re.search(r"pip install -e '(\.\[[^\]]*\])'", set_up).group(1)
    assert f"python -m pip install -q -e '{extras}'" in ci
    assert set_up.endswith("&& steerbench demo")
    tests = _readme_block("python -m pytest")
    assert tests in ci.splitlines(), f"README's test command {tests!r} is not a line of .ci/run"


def test_the_readme_fits_on_one_screen() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 120


@pytest.mark.parametrize("page", [README, REPO / "CONTRIBUTING.md"], ids=lambda p: p.name)
def test_relative_links_outside_the_site_point_at_files(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        assert (page.parent / target.split("#")[0]).exists(), f"{page.name}: link to {target}"


def test_every_command_block_of_the_guides_says_how_it_is_tested() -> None:
    """Tutorial and how-to commands are run by a test (`<!-- tested: FILE ... -->`, naming files
    that exist) or say why not (`<!-- not-run: REASON -->`), except blocks that a named test reads
    from the page itself."""
    read_by_tests = {p.read_text(encoding="utf-8") for p in (REPO / "tests").rglob("test_docs_*.py")}
    unmarked = []
    for page in [*sorted((DOCS / "tutorial").glob("*.md")), *sorted((DOCS / "how-to").glob("*.md"))]:
        for block in blocks(page):
            if block.language not in ("bash", "sh", "console", "shell"):
                continue
            if not block.marker:
                relative = page.relative_to(REPO).as_posix()
                if not any(relative in source for source in read_by_tests):
                    unmarked.append(block.where())
                continue
            for named in re.findall(r"[\w./-]+\.(?:py|sh)\b", block.marker):
                if "/" in named:
                    assert (REPO / named).exists(), f"{block.where()}: the marker names {named}, which is not there"
    assert not unmarked, f"command blocks with neither a tested: nor a not-run: marker: {unmarked}"
