"""The plugin's persistent steering table under torch.compile, without vLLM: one compiled graph, never
recompiled, steers each row by whatever the table holds at that step, exactly as eager does.

vLLM compiles its model once and then skips Dynamo's guards, so anything the hook decides in Python
at trace time is frozen (that is how one-server steering used to go silently off). Here recompiling
is made an error, which stands in for vLLM's skipped guards."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the vllm lane's .venv-vllm has it)")

from steerbench.serve.plugin import SteeringTable, steer_layer  # noqa: E402

WIDTH, ROWS = 16, 64


class Layer(torch.nn.Module):
    """A stand-in for vLLM's Llama decoder layer: returns (hidden_states, residual), not yet summed."""

    def __init__(self, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(WIDTH, WIDTH, generator=generator) / WIDTH**0.5)

    def forward(self, hidden, residual):
        residual = hidden + residual
        return torch.tanh(residual @ self.weight), residual


class Stack(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(Layer(seed) for seed in range(3))

    def forward(self, hidden):
        residual = torch.zeros_like(hidden)
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        return hidden + residual


def steered_stack(operation: str) -> tuple[Stack, SteeringTable]:
    stack = Stack()
    table = SteeringTable(ROWS, "cpu")
    vector = torch.randn(WIDTH, generator=torch.Generator().manual_seed(7))
    steer_layer(stack.layers[1], vector / vector.norm() if operation == "ablate" else vector, operation, table)
    return stack, table


@pytest.mark.parametrize("operation", ["add", "ablate"])
def test_one_compiled_graph_follows_the_table_row_by_row(operation):
    stack, table = steered_stack(operation)
    compiled = torch.compile(stack, dynamic=True)
    generator = np.random.default_rng(0)
    unsteered = Stack()
    try:
        for step, rows in enumerate([5, 9, 9, 3, 12]):
            hidden = torch.randn(rows, WIDTH, generator=torch.Generator().manual_seed(step))
            values = generator.choice([0.0, -1.0, 0.5, 1.0, 2.0], size=rows)
            if step == 2:
                values[:] = 0.0  # a step where nothing is steered
            table.fill(values)
            got = compiled(hidden)
            eager = stack(hidden)
            table.clear()
            torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
            plain = unsteered(hidden)
            steered_rows = values != 0
            # unsteered rows equal the model without any hook; steered rows differ from it
            torch.testing.assert_close(got[~torch.from_numpy(steered_rows)], plain[~torch.from_numpy(steered_rows)])
            assert all(not torch.allclose(got[row], plain[row]) for row in np.flatnonzero(steered_rows))
            if step == 0:
                torch.compiler.set_stance("fail_on_recompile")  # from here on, one graph for every step
    finally:
        torch.compiler.set_stance("default")
        torch._dynamo.reset()


def test_the_compiled_graph_writes_the_proof_it_steered():
    stack, table = steered_stack("add")
    compiled = torch.compile(stack, dynamic=True)
    hidden = torch.randn(4, WIDTH)
    try:
        table.fill(np.zeros(4))
        compiled(hidden)
        assert float(table.fired) == 0.0  # nothing to steer: no proof
        table.fill(np.array([0.0, 0.0, -1.5, 0.0]))
        compiled(hidden)
        assert float(table.fired) == 1.5
    finally:
        torch._dynamo.reset()


def test_a_step_larger_than_the_table_is_refused():
    table = SteeringTable(4, "cpu")
    with pytest.raises(RuntimeError, match="a step of 5 tokens, the table holds 4"):
        table.fill(np.ones(5))
