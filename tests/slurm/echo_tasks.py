"""A tiny Inspect task for the Slurm tests: whose answer is right is known exactly.

The simulator (`steerbench simulate`) answers any question outside its bundled demo data
with a sentence naming its multiplier ("... multiplier +1.00] ..."). Each sample's target is
one such name, so a cell's accuracy is the share of its samples that name the cell's
multiplier: a cell run against the wrong endpoint, or not at all, shows at once.
"""

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def echo(targets: str) -> Task:
    """targets: comma-separated multiplier names, e.g. "+1.00,-1.00", one sample each."""
    samples = [
        Sample(id=i + 1, input=f"Question {i + 1}: which multiplier are you?", target=f"multiplier {t}")
        for i, t in enumerate(targets.split(","))
    ]
    return Task(dataset=samples, solver=generate(), scorer=includes())
