"""Does per-token steering survive a captured graph? A decoder-layer stand-in, in PyTorch alone.

vLLM cannot be installed on the GPU machine (no package index there), so this proves the
mechanism that issue 22's compiled steering relies on, without vLLM:

- The steering lives in **persistent buffers**, allocated once before capture: a table of
  steering vectors (row 0 all zeros, so an unsteered token adds exact zeros), a per-token row
  index and a per-token multiplier. Before each replay they are filled *in place*; the captured
  graph reads whatever they hold.
- The layer adds ``multiplier[t] * table[index[t]]`` to its output for every token t.

Three ways run the same batches with fresh per-row multipliers and table rows at every step:

1. eager PyTorch (the reference);
2. ``torch.cuda.CUDAGraph`` capture, replayed after the in-place fills;
3. ``torch.compile(mode="reduce-overhead")`` (CUDA graphs through Inductor's cudagraph trees).

Each must equal eager row for row (the graph replays the same kernels, so bit for bit; compiled
code may fuse differently, so to a tight tolerance), rows with multiplier 0 must be bit-identical
to the unsteered layer run the same way (same graph, buffers all zero), and a
**counter-example** shows what the buffers avoid: a multiplier passed as a Python float is
frozen into the graph at capture time, and later steps silently keep it.

    python bench/cuda_graph_steering.py            # on a CUDA machine; exits 1 if any check fails
    python bench/cuda_graph_steering.py --device cpu   # eager vs torch.compile only (no CUDA graphs)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

HIDDEN = 576  # SmolLM2-135M's hidden size
CONFIGS = 8  # steering settings in one batch, as EasySteer's 8-configuration measurement
MAX_TOKENS = 512


class SteeredLayer(nn.Module):
    """A stand-in decoder layer (RMSNorm-free MLP block with a residual) with persistent steering buffers."""

    def __init__(self, hidden: int, configs: int, max_tokens: int) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, 4 * hidden)
        self.down = nn.Linear(4 * hidden, hidden)
        # Allocated before any capture; only ever written in place (copy_), never rebound.
        self.register_buffer("steer_table", torch.zeros(configs + 1, hidden))  # row 0 stays zero
        self.register_buffer("steer_index", torch.zeros(max_tokens, dtype=torch.long))
        self.register_buffer("steer_scale", torch.zeros(max_tokens))

    def block(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.nn.functional.gelu(self.up(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = self.block(x)
        return h + self.steer_scale[:n, None] * self.steer_table[self.steer_index[:n]]


class FloatSteeredLayer(SteeredLayer):
    """The counter-example: the multiplier is a Python float argument, frozen at capture."""

    def forward(self, x: torch.Tensor, multiplier: float = 0.0) -> torch.Tensor:  # type: ignore[override]
        return self.block(x) + multiplier * self.steer_table[1]


def fill(layer: SteeredLayer, index: torch.Tensor, scale: torch.Tensor, table: torch.Tensor) -> None:
    """What the plugin does before each forward: write the step's values into the same storage."""
    layer.steer_table.copy_(table)
    layer.steer_index.zero_()
    layer.steer_scale.zero_()
    layer.steer_index[: index.numel()].copy_(index)
    layer.steer_scale[: scale.numel()].copy_(scale)


def reference(
    layer: SteeredLayer, x: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, table: torch.Tensor
) -> torch.Tensor:
    """Eager, from fresh tensors (no shared buffer): what the steered layer must compute."""
    with torch.no_grad():
        return layer.block(x) + scale[:, None] * table[index]


def random_step(generator: torch.Generator, tokens: int, device: str) -> tuple[torch.Tensor, ...]:
    index = torch.randint(0, CONFIGS + 1, (tokens,), generator=generator).to(device)
    scale = (torch.randn(tokens, generator=generator) * 4).to(device)
    scale[index == 0] = 0.0  # row 0 = unsteered token
    scale[: tokens // 8] = 0.0  # and some steered rows asked at multiplier 0
    table = torch.randn(CONFIGS + 1, HIDDEN, generator=generator).to(device)
    table[0] = 0.0
    x = torch.randn(tokens, HIDDEN, generator=generator).to(device)
    return x, index, scale, table


def compare(
    name: str, got: torch.Tensor, want: torch.Tensor, unsteered: torch.Tensor, scale: torch.Tensor, exact: bool
) -> dict:
    diff = (got - want).abs().max().item()
    rows_zero = scale == 0
    zero_rows_bitwise = bool(torch.equal(got[rows_zero], unsteered[rows_zero]))
    steered_moved = (
        bool((got[~rows_zero] - unsteered[~rows_zero]).abs().amax(dim=1).min().item() > 0)
        if (~rows_zero).any()
        else True
    )
    ok = (diff == 0.0 if exact else diff <= 1e-4) and steered_moved and zero_rows_bitwise
    return {
        "way": name,
        "max_abs_diff": diff,
        "zero_rows_bit_identical": zero_rows_bitwise,
        "steered_rows_moved": steered_moved,
        "ok": ok,
    }


def check_cuda_graph(layer: SteeredLayer, steps: int, tokens: int, generator: torch.Generator) -> list[dict]:
    static_x = torch.zeros(tokens, HIDDEN, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):  # warm-up before capture, as vLLM does
            layer(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = layer(static_x)
    results = []
    for _ in range(steps):
        x, index, scale, table = random_step(generator, tokens, "cuda")
        static_x.copy_(x)
        fill(layer, index, scale, table)
        graph.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            unsteered = layer.block(x)
        results.append(
            compare(
                "cuda_graph", static_out.clone(), reference(layer, x, index, scale, table), unsteered, scale, exact=True
            )
        )
    return results


def check_compiled(layer: SteeredLayer, steps: int, tokens: int, generator: torch.Generator, device: str) -> list[dict]:
    mode = "reduce-overhead" if device == "cuda" else "default"
    compiled = torch.compile(layer, mode=mode, dynamic=False)
    results = []
    for _ in range(steps):
        x, index, scale, table = random_step(generator, tokens, device)
        # "unsteered" here is the same compiled graph with every buffer zero: what an unsteered
        # request gets from the same server. Eager's unsteered block may round differently after fusion.
        fill(layer, index[:0], scale[:0], torch.zeros_like(table))
        with torch.no_grad():
            unsteered = compiled(x).clone()
        fill(layer, index, scale, table)
        with torch.no_grad():
            got = compiled(x).clone()
        if device == "cuda":
            torch.cuda.synchronize()
        results.append(
            compare(
                f"torch.compile({mode})", got, reference(layer, x, index, scale, table), unsteered, scale, exact=False
            )
        )
    return results


def counter_example(tokens: int, generator: torch.Generator) -> dict:
    """A float multiplier captured into a CUDA graph: later steps replay the captured value."""
    layer = FloatSteeredLayer(HIDDEN, CONFIGS, MAX_TOKENS).cuda().eval()
    layer.steer_table[1].copy_(torch.randn(HIDDEN, generator=generator).cuda())
    static_x = torch.randn(tokens, HIDDEN, generator=generator).cuda()
    with torch.no_grad():
        layer(static_x, 1.0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = layer(static_x, 1.0)  # captured at m = 1
    graph.replay()  # the user now asks m = 3 -- but there is no way to tell the graph
    torch.cuda.synchronize()
    with torch.no_grad():
        wanted = layer(static_x, 3.0)
        captured = layer(static_x, 1.0)
    return {
        "replayed_equals_m1": bool(torch.equal(static_out, captured)),
        "replayed_equals_m3": bool(torch.allclose(static_out, wanted)),
    }


def timing(layer: SteeredLayer, tokens: int, generator: torch.Generator) -> dict:
    """Replay cost against eager for the same steered step (per call, microseconds)."""
    x, index, scale, table = random_step(generator, tokens, "cuda")
    fill(layer, index, scale, table)
    static_x = x.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad():
        layer(static_x)
    with torch.cuda.graph(graph), torch.no_grad():
        layer(static_x)

    def per_call(fn, calls: int = 2000) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / calls * 1e6

    with torch.no_grad():
        eager_us = per_call(lambda: layer(static_x))
    graph_us = per_call(graph.replay)
    return {
        "tokens": tokens,
        "eager_us": round(eager_us, 1),
        "graph_us": round(graph_us, 1),
        "eager_over_graph": round(eager_us / graph_us, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    layer = SteeredLayer(HIDDEN, CONFIGS, MAX_TOKENS).to(args.device).eval()
    print(
        f"torch {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
    )
    results: list[dict] = []
    summary: dict = {}
    if args.device == "cuda":
        results += check_cuda_graph(layer, args.steps, args.tokens, generator)
    results += check_compiled(layer, args.steps, args.tokens, generator, args.device)
    if args.device == "cuda":
        summary["counter_example"] = counter_example(args.tokens, generator)
        summary["timing"] = [timing(layer, t, generator) for t in (8, 256)]
    ways: dict[str, list[dict]] = {}
    for row in results:
        ways.setdefault(row["way"], []).append(row)
    all_ok = True
    for way, rows in ways.items():
        ok = all(r["ok"] for r in rows)
        all_ok &= ok
        print(
            f"{way:32s} {len(rows)} steps with fresh per-row multipliers: "
            f"max |diff| vs eager {max(r['max_abs_diff'] for r in rows):.3g}, "
            f"m=0 rows bit-identical to unsteered: {all(r['zero_rows_bit_identical'] for r in rows)}, "
            f"steered rows moved: {all(r['steered_rows_moved'] for r in rows)} -> {'OK' if ok else 'FAIL'}"
        )
    if "counter_example" in summary:
        ce = summary["counter_example"]
        print(
            f"counter-example (float multiplier captured at m=1, asked m=3): replay equals m=1: "
            f"{ce['replayed_equals_m1']}, equals m=3: {ce['replayed_equals_m3']}"
        )
        all_ok &= ce["replayed_equals_m1"] and not ce["replayed_equals_m3"]
    for row in summary.get("timing", []):
        print(
            f"timing, {row['tokens']} tokens: eager {row['eager_us']} us, graph replay {row['graph_us']} us, "
            f"ratio {row['eager_over_graph']}x"
        )
    print(json.dumps({"ok": all_ok, **summary}))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
