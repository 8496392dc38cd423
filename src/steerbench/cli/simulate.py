"""`steerbench simulate`: serve simulated steered endpoints on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import json
import time

import click

from ..core.config import ConfigError
from .options import friendly_errors
from .output import error, say


@click.command()
@click.option(
    "--multipliers",
    default="-1.5,-1.0,-0.5,0.0,0.5,1.0,1.5",
    show_default=True,
    help="Comma-separated multipliers, one endpoint each.",
)
@click.option("--port", type=int, default=8000, show_default=True, help="First port; endpoint i listens on port+i.")
@friendly_errors
def simulate(multipliers: str, port: int) -> None:
    """Serve simulated steered endpoints on 127.0.0.1 and print their deployments lines."""
    from ..core.config import parse_multiplier
    from ..sim.demo import demo_responder
    from ..sim.simulator import SIMULATOR_NOTICE, SimulatedEndpoint

    values = [parse_multiplier(m, "command line", None, "--multipliers") for m in multipliers.split(",") if m.strip()]
    endpoints = [SimulatedEndpoint(m.value, demo_responder, port=port + i) for i, m in enumerate(values)]
    try:
        for endpoint in endpoints:
            try:
                endpoint.start()
            except OSError as e:
                raise ConfigError(
                    "command line", f"port {endpoint.requested_port} is not free ({e.strerror})", field="--port"
                ) from None
        error(f"# {SIMULATOR_NOTICE}")
        error("# deployments.jsonl lines (serving until Ctrl-C):")
        for endpoint, value in zip(endpoints, values):
            say(json.dumps({**endpoint.deployment_line(), "multiplier": value.label}))
        while True:
            time.sleep(3600)
    finally:
        for endpoint in endpoints:
            endpoint.stop()


command = simulate
