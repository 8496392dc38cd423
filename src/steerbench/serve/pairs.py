"""Contrast pairs for `steerbench vector`: read and check a pairs .jsonl file. Pure: standard library only.

One JSON object per line: {"positive": SIDE, "negative": SIDE}, where a SIDE is a chat
({"messages": [{"role": ..., "content": ...}, ...]}) or a prompt with a completion
({"prompt": ..., "completion": ...}). A chat ending with an assistant message has that message as
its completion; the messages before it are the prompt. Other top-level keys (an id, a category)
are kept out of the way and ignored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

POSITIONS = ("last-prompt", "mean-answer")
SIDES = ("positive", "negative")
SIDE_FIELDS = {"messages", "prompt", "completion"}


class PairsError(ValueError):
    """A pairs file that cannot be used: the message names the file, the line and the field."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Side:
    """One side of a pair: the prompt (as chat messages) and the completion, if any."""

    prompt: tuple[Message, ...]
    completion: str | None
    plain_prompt: str | None = None  # the prompt form's text, for models without a chat template


@dataclass(frozen=True)
class ContrastPair:
    line: int
    positive: Side
    negative: Side


@dataclass(frozen=True)
class PairsFile:
    path: Path
    pairs: tuple[ContrastPair, ...]
    sha256: str


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{where} is empty")
    return value


def _messages(value: object, where: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of {{role, content}} objects")
    messages = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{here} must be an object with role and content")
        extra = sorted(set(item) - {"role", "content"})
        if extra:
            raise ValueError(f"{here} has unknown field {extra[0]!r} (expected role and content)")
        messages.append(Message(_text(item.get("role"), f"{here}.role"), _text(item.get("content"), f"{here}.content")))
    return tuple(messages)


def _side(value: object, name: str, position: str) -> Side:
    if not isinstance(value, dict):
        raise ValueError(
            f"{name} is missing"
            if value is None
            else f"{name} must be an object with messages, or prompt and completion"
        )
    extra = sorted(set(value) - SIDE_FIELDS)
    if extra:
        raise ValueError(f"{name} has unknown field {extra[0]!r} (expected messages, or prompt and completion)")
    if "messages" in value:
        if "prompt" in value or "completion" in value:
            raise ValueError(f"{name}: give messages, or prompt and completion, not both")
        messages = _messages(value["messages"], f"{name}.messages")
        if messages[-1].role == "assistant":
            side = Side(messages[:-1], messages[-1].content)
            if not side.prompt:
                raise ValueError(f"{name}.messages holds only an assistant message: there is no prompt")
        else:
            side = Side(messages, None)
        if position == "mean-answer" and side.completion is None:
            raise ValueError(
                f"{name}.messages must end with an assistant message (the answer) for --position mean-answer"
            )
        return side
    if "prompt" not in value:
        raise ValueError(f"{name} needs messages, or prompt and completion")
    prompt = _text(value["prompt"], f"{name}.prompt")
    completion = value.get("completion")
    if completion is not None or position == "mean-answer":
        completion = _text(completion, f"{name}.completion")
    return Side((Message("user", prompt),), completion, plain_prompt=prompt)


def _pair(text: str, line: int, position: str) -> ContrastPair:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object with positive and negative")
    positive, negative = (_side(record.get(name), name, position) for name in SIDES)
    if positive == negative:
        raise ValueError("positive and negative are identical: the pair carries no difference")
    return ContrastPair(line, positive, negative)


def read_pairs(path: Path, position: str) -> PairsFile:
    """Every pair of the file, checked; the first problem stops with the file, line and field."""
    if position not in POSITIONS:
        raise PairsError(f"--position {position!r}: use one of {', '.join(POSITIONS)}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PairsError(f"--pairs {path}: cannot read the file ({error.strerror})") from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise PairsError(f"{path}: not UTF-8 text") from None
    pairs = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            pairs.append(_pair(text, number, position))
        except ValueError as problem:
            raise PairsError(f"{path}, line {number}: {problem}") from None
    if not pairs:
        raise PairsError(f"{path}: no pairs (expected one JSON object per line)")
    return PairsFile(path, tuple(pairs), hashlib.sha256(data).hexdigest())
