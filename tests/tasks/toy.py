"""Two tiny Inspect tasks for the end-to-end tests: their right answers are known exactly."""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import match
from inspect_ai.solver import generate

QUESTIONS = 4


def arithmetic_question(number: int) -> str:
    return f"Question {number}: what is {number} + {number * 10}? Answer with the number only."


@task
def arithmetic(offset: int = 0, questions: int = QUESTIONS) -> Task:
    samples = [
        Sample(id=n, input=arithmetic_question(n + offset), target=str(11 * (n + offset)))
        for n in range(1, questions + 1)
    ]
    return Task(dataset=samples, solver=generate(), scorer=match(location="exact"))


@task
def capitals(fewshot: int = 3) -> Task:
    """A task with a few-shot parameter: the examples are prepended to each prompt."""
    examples = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo")][:fewshot]
    prefix = "".join(f"Example: capital of {c}? {a}\n" for c, a in examples)
    questions = [("Kenya", "Nairobi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Egypt", "Cairo")]
    samples = [
        Sample(id=i + 1, input=f"{prefix}Question {i + 1}: capital of {c}?", target=a)
        for i, (c, a) in enumerate(questions)
    ]
    return Task(dataset=samples, solver=generate(), scorer=match(location="exact"))
