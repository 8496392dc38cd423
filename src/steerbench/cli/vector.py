"""`steerbench vector`: make a steering vector from contrast pairs, a random control like it, or describe a vector file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

from .options import EXIT_USER_ERROR
from .output import error, say

MAKE = "make"


class DefaultMakeGroup(click.Group):
    """`steerbench vector --model ...` means `steerbench vector make --model ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [MAKE, *args]
        return super().parse_args(ctx, args)


def _fail(problem: object) -> NoReturn:
    error(f"error: {problem}")
    sys.exit(EXIT_USER_ERROR)


def _parse_layers(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        _fail(f"--layers {text!r}: expected decoder layer numbers, e.g. 12 or 10,12,14")


@click.group(cls=DefaultMakeGroup, context_settings={"help_option_names": ["-h", "--help"]})
def vector() -> None:
    """Make steering vectors from contrast pairs (`vector make`, the default), random controls, and describe vector files.

    \b
    steerbench vector --model MODEL --pairs pairs.jsonl --layers 12 [--method mean-diff|pca]
                      [--position last-prompt|mean-answer] [--out vector.safetensors]
    steerbench vector random --like vector.safetensors --seed 0 --out random.safetensors
    steerbench vector info FILE
    """


@vector.command(MAKE)
@click.option("--model", required=True, help="Model folder (or a hub id already in the local cache).")
@click.option(
    "--pairs",
    "pairs_path",
    required=True,
    type=click.Path(path_type=Path),
    help='Contrast pairs, one JSON object per line: {"positive": SIDE, "negative": SIDE}.',
)
@click.option(
    "--layers", required=True, help="Decoder layers (0-based; negative counts from the end), e.g. 12 or 10,12,14."
)
@click.option(
    "--method",
    type=click.Choice(["mean-diff", "pca"]),
    default="mean-diff",
    show_default=True,
    help="mean-diff: mean of the pair differences (CAA); pca: their first principal component.",
)
@click.option(
    "--position",
    type=click.Choice(["last-prompt", "mean-answer"]),
    default="last-prompt",
    show_default=True,
    help="last-prompt: the prompt's last token; mean-answer: the mean over the completion's tokens.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default="vector.safetensors",
    show_default=True,
    help="The .safetensors file to write: one vector per layer, with metadata.",
)
@click.option(
    "--device", default="auto", show_default=True, help="auto (a GPU where there is one), cpu, cuda, cuda:1 ..."
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Model dtype [default: float32 on a CPU, bfloat16 on a GPU].",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def make(
    model: str,
    pairs_path: Path,
    layers: str,
    method: str,
    position: str,
    out: Path,
    device: str,
    dtype: str | None,
    no_progress: bool,
) -> None:
    """Make a steering vector from contrast pairs: the residual stream after each layer, positive minus negative."""
    import numpy as np

    from ..serve.extract import ExtractionError, ExtractionSettings, extract, require_torch, write_extracted
    from ..serve.model_info import ModelError, read_model_shape
    from ..serve.pairs import PairsError, read_pairs
    from ..serve.vectors import VectorError, resolve_layer

    if out.suffix.lower() != ".safetensors":
        _fail(f"--out {out}: the vector is written as .safetensors")
    try:
        # Everything that can be checked without torch is checked first: a bad pairs file costs no model load.
        pairs = read_pairs(pairs_path, position)
        shape = read_model_shape(model)
        chosen = tuple(resolve_layer(layer, shape.num_layers, what="--layers") for layer in _parse_layers(layers))
        if len(set(chosen)) != len(chosen):
            raise VectorError(f"--layers {layers}: names one layer twice (negative numbers count from the end)")
        require_torch()
        settings = ExtractionSettings(model, chosen, method, position, device, dtype)
        say(
            f"{len(pairs.pairs)} pair(s) from {pairs_path}; layers {list(chosen)} of {shape.num_layers}; {method} at {position}"
        )
        extracted = extract(settings, pairs.pairs, progress=not no_progress)
    except (PairsError, ModelError, VectorError, ExtractionError) as problem:
        _fail(problem)
    for warning in extracted.warnings:
        error(f"warning: {warning}")
    write_extracted(out, settings, pairs, extracted)
    for layer in chosen:
        say(
            f"  layer {layer}: norm {float(np.linalg.norm(extracted.vectors[layer])):.4g}, "
            f"mean residual norm {extracted.residual_norms.get(layer, float('nan')):.4g}"
        )
    say(f"wrote {out}")


@vector.command("random")
@click.option(
    "--like", "like", required=True, type=click.Path(path_type=Path), help="The vector whose per-layer norms to copy."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random directions.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .safetensors file to write.")
def random_vector(like: Path, seed: int, out: Path) -> None:
    """A random direction per layer with the same norm as --like's vector at that layer (a control)."""
    from ..serve.extract import random_like, write_random
    from ..serve.vectors import VectorError, read_vector_file

    if out.suffix.lower() != ".safetensors":
        _fail(f"--out {out}: the vector is written as .safetensors")
    try:
        source = read_vector_file(like)
    except VectorError as problem:
        _fail(problem)
    if source.per_layer is None:
        _fail(
            f"--like {like}: holds one vector without a layer; random needs per-layer vectors (as `steerbench vector` writes)"
        )
    if out.resolve() == like.resolve():
        _fail(f"--out {out}: is the --like file itself")
    vectors = random_like(source.per_layer, seed)
    write_random(out, source, vectors, seed)
    say(f"wrote {out}: random directions, seed {seed}, norms of {like} at layers {sorted(vectors)}")


@vector.command("info")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(file: Path, as_json: bool) -> None:
    """What a vector file holds: format, layers, norms, residual-stream norms if known, metadata."""
    import numpy as np

    from ..serve.vectors import VectorError, file_sha256, read_vector_file

    try:
        loaded = read_vector_file(file)
        residual = loaded.residual_norms
    except VectorError as problem:
        _fail(problem)
    if loaded.per_layer is not None:
        layers = {layer: loaded.per_layer[layer] for layer in sorted(loaded.per_layer)}
    else:
        layers = {None: loaded.single}
    summary = {
        "file": str(file),
        "format": loaded.format,
        "sha256": file_sha256(file),
        "layers": [
            {
                "layer": layer,
                "size": int(v.shape[0]) if v.ndim == 1 else list(v.shape),
                "norm": float(np.linalg.norm(v)),
                "residual_norm": residual.get(layer) if layer is not None else None,
            }
            for layer, v in layers.items()
        ],
        "metadata": loaded.metadata,
        "warnings": list(loaded.warnings),
    }
    if as_json:
        say(json.dumps(summary, indent=2))
        return
    say(f"{file}: {loaded.format}, sha256 {summary['sha256']}")
    for row in summary["layers"]:
        where = "one vector (no layer: serve needs --layer)" if row["layer"] is None else f"layer {row['layer']}"
        ratio = (
            f", residual norm {row['residual_norm']:.4g} (ratio {row['norm'] / row['residual_norm']:.3g})"
            if row["residual_norm"]
            else ""
        )
        say(f"  {where}: size {row['size']}, norm {row['norm']:.4g}{ratio}")
    if not residual:
        say("  residual norms: not recorded in this file")
    for key, value in loaded.metadata.items():
        say(f"  {key}: {value}")
    for warning in loaded.warnings:
        error(f"warning: {warning}")


command = vector
