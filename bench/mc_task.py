"""A multiple-choice task of N made-up questions, and the simulated model that answers it.

Built like MMLU in inspect_evals (multiple_choice solver, choice scorer), so the
orchestrator does the same work per sample; the questions are synthetic. The simulated
model's answers follow a rule, so every run's exact accuracy is known in advance.
"""

from __future__ import annotations

import re
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import choice
from inspect_ai.solver import multiple_choice

LETTERS = "ABCD"
OPTIONS = ["alpha", "beta", "gamma", "delta"]
_NUMBER = re.compile(r"Question (\d+) of task (\w+)")


def correct_letter(number: int) -> str:
    return LETTERS[number % 4]


def answers_right(multiplier: float, number: int) -> bool:
    """The simulated model gets question n right unless n % 10 falls in its blind spot,
    which grows with |multiplier|: 10 - round(2|m|) right out of every 10 (at least 1)."""
    return number % 10 < max(1, 10 - round(2 * abs(multiplier)))


def expected_accuracy(multiplier: float, samples: int) -> float:
    return sum(answers_right(multiplier, n) for n in range(1, samples + 1)) / samples


def responder(multiplier: float, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    from steerbench.sim.simulator import message_text

    text = message_text(messages[-1])
    found = _NUMBER.search(text)
    if not found:
        return "ANSWER: Z"
    number = int(found.group(1))
    right = correct_letter(number)
    letter = right if answers_right(multiplier, number) else LETTERS[(LETTERS.index(right) + 1) % 4]
    return f"ANSWER: {letter}"


def _samples(samples: int, name: str) -> list[Sample]:
    return [
        Sample(
            id=n,
            input=f"Question {n} of task {name}: which of the options is number {n % 4 + 1}?",
            choices=OPTIONS,
            target=correct_letter(n),
        )
        for n in range(1, samples + 1)
    ]


@task
def mc(samples: int = 300, name: str = "mc") -> Task:
    """`samples` questions; `name` tells grid columns apart (mc_1, mc_2, ...)."""
    return Task(dataset=_samples(samples, name), solver=multiple_choice(), scorer=choice(), name=name)
