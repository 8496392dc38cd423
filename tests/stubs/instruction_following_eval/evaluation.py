"""TEST STAND-IN for ``instruction_following_eval.evaluation`` (see the package docstring).

Supported instruction ids (anything else raises ``NotImplementedError``):

* ``change_case:english_lowercase``: no upper-case letters.
* ``punctuation:no_comma``: no ``,``.
* ``length_constraints:number_words``: word count ``at least`` / ``less than`` ``num_words``.
* ``startend:end_checker``: ends with ``end_phrase`` (case-insensitive, trailing space ignored).
* ``startend:quotation``: whole response wrapped in double quotes.
* ``detectable_format:title``: contains a ``<<title>>``.
* ``detectable_format:number_bullet_lists``: exactly ``num_bullets`` lines starting ``* `` or ``- ``.
* ``detectable_content:postscript``: a line starting with ``postscript_marker``.
* ``keywords:existence``: every keyword present (whole word, case-insensitive).
* ``keywords:forbidden_words``: no forbidden word present (whole word, case-insensitive).

Loose mode, like IFEval's, also accepts the response with its first and/or last line
removed and with ``*`` removed; an instruction is followed if any non-empty variant
passes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from collections.abc import Callable


@dataclasses.dataclass
class InputExample:
    key: Any
    instruction_id_list: list[str]
    prompt: str
    kwargs: Any  # list of dicts, or a dict keyed by index (int or str)


@dataclasses.dataclass
class OutputExample:
    instruction_id_list: list[str]
    prompt: str
    response: str
    follow_all_instructions: bool
    follow_instruction_list: list[bool]


def ensure_nltk_resource() -> None:
    """The real package downloads NLTK's punkt here; the stand-in needs no NLTK."""


def _words(text: str) -> list[str]:
    return re.findall(r"\b\w+\b", text)


def _has_word(text: str, word: str) -> bool:
    return re.search(r"\b" + re.escape(word) + r"\b", text, re.IGNORECASE) is not None


def _number_words(text: str, kw: dict[str, Any]) -> bool:
    count, limit, relation = len(_words(text)), int(kw["num_words"]), kw.get("relation", "at least")
    if relation == "at least":
        return count >= limit
    if relation == "less than":
        return count < limit
    raise ValueError(f"unknown relation {relation!r}")


def _bullets(text: str, kw: dict[str, Any]) -> bool:
    bullets = [ln for ln in text.splitlines() if re.match(r"^\s*[*-]\s+\S", ln)]
    return len(bullets) == int(kw["num_bullets"])


def _postscript(text: str, kw: dict[str, Any]) -> bool:
    marker = re.escape(kw.get("postscript_marker") or "P.S.")
    return re.search(r"^\s*" + marker, text, re.IGNORECASE | re.MULTILINE) is not None


def _quotation(text: str, kw: dict[str, Any]) -> bool:
    stripped = text.strip()
    return len(stripped) > 1 and stripped[0] == '"' and stripped[-1] == '"'


CHECKS: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "change_case:english_lowercase": lambda t, kw: t == t.lower(),
    "punctuation:no_comma": lambda t, kw: "," not in t,
    "length_constraints:number_words": _number_words,
    "startend:end_checker": lambda t, kw: t.strip().lower().endswith(str(kw["end_phrase"]).strip().lower()),
    "startend:quotation": _quotation,
    "detectable_format:title": lambda t, kw: re.search(r"<<[^\n]+>>", t) is not None,
    "detectable_format:number_bullet_lists": _bullets,
    "detectable_content:postscript": _postscript,
    "keywords:existence": lambda t, kw: all(_has_word(t, k) for k in kw["keywords"]),
    "keywords:forbidden_words": lambda t, kw: not any(_has_word(t, k) for k in kw["forbidden_words"]),
}


def _kwargs_at(kwargs: Any, index: int) -> dict[str, Any]:
    if isinstance(kwargs, dict):
        found = kwargs.get(index, kwargs.get(str(index), {}))
    else:
        found = kwargs[index] if index < len(kwargs) else {}
    return {k: v for k, v in (found or {}).items() if v is not None}


def _loose_variants(response: str) -> list[str]:
    lines = response.split("\n")
    bases = [response, "\n".join(lines[1:]), "\n".join(lines[:-1]), "\n".join(lines[1:-1])]
    return bases + [b.replace("*", "") for b in bases]


def test_instruction_following(inp: InputExample, response: str, strict: bool = True) -> OutputExample:
    candidates = [response] if strict else _loose_variants(response)
    followed = []
    for index, instruction_id in enumerate(inp.instruction_id_list):
        check = CHECKS.get(instruction_id)
        if check is None:
            raise NotImplementedError(f"the IFEval test stand-in does not implement {instruction_id!r}")
        kw = _kwargs_at(inp.kwargs, index)
        followed.append(any(c.strip() and check(c, kw) for c in candidates))
    return OutputExample(
        instruction_id_list=list(inp.instruction_id_list),
        prompt=inp.prompt,
        response=response,
        follow_all_instructions=all(followed),
        follow_instruction_list=followed,
    )


# pytest would otherwise collect this module-level function as a test
test_instruction_following.__test__ = False  # type: ignore[attr-defined]
