"""Running the planned vLLM servers: start, wait until each answers, write deployments, stop with no orphans."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .plan import KEY_ENV, ServeInputError, ServePlan, ServerSpec
from .plugin import SETTINGS_ENV, proof_path

LEFTOVER_SECONDS = 5.0  # for an engine core still exiting after its API server


class ServeError(RuntimeError):
    """A server that could not start or died; the message carries its last log lines."""


def check_ports_free(plan: ServePlan) -> None:
    for server in plan.servers:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As uvicorn binds: a port whose old connections linger in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((server.host, server.port))
            except OSError:
                raise ServeInputError(f"--port: {server.host}:{server.port} is already in use") from None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def write_deployments(path: Path, lines: list[dict]) -> None:
    write_private(path, "".join(json.dumps(line) + "\n" for line in lines))


def last_lines(path: Path, count: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return "(no log)"


@dataclass
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def answers(self) -> bool:
        request = urllib.request.Request(
            self.spec.url + "/models", headers={"Authorization": f"Bearer {self.spec.key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def died_message(self) -> str:
        return (
            f"vLLM server on port {self.spec.port} exited with code {self.process.returncode} during start-up. "
            f"Last lines of {self.log_path}:\n{last_lines(self.log_path)}"
        )


def start_servers(plan: ServePlan, log_dir: Path) -> list[RunningServer]:
    log_dir.mkdir(parents=True, exist_ok=True)
    running = []
    for server in plan.servers:
        settings_path = log_dir / server.settings_name
        settings_path.write_text(json.dumps(server.settings))
        proof_path(settings_path).unlink(missing_ok=True)  # an earlier session's proof proves nothing now
        log_path = log_dir / f"vllm-{server.port}.log"
        env = {**os.environ, **server.env, SETTINGS_ENV: str(settings_path.resolve()), KEY_ENV: server.key}
        with open(log_path, "w") as log:
            # Its own session (process group), so stopping it reaches vLLM's engine children too.
            process = subprocess.Popen(
                server.argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        running.append(RunningServer(server, process, log_path))
    return running


def wait_until_ready(
    running: list[RunningServer],
    timeout: float,
    stop: threading.Event,
    on_ready: Callable[[RunningServer, float], None],
) -> None:
    started = time.monotonic()
    waiting = list(running)
    while waiting:
        for server in list(waiting):
            if not server.alive():
                raise ServeError(server.died_message())
            if server.answers():
                waiting.remove(server)
                on_ready(server, time.monotonic() - started)
        if not waiting:
            return
        if stop.wait(1.0):
            raise KeyboardInterrupt
        if time.monotonic() - started > timeout:
            ports = ", ".join(str(server.spec.port) for server in waiting)
            raise ServeError(
                f"vLLM servers on port(s) {ports} did not answer /v1/models within {timeout:.0f} s; see {waiting[0].log_path}"
            )


def process_table() -> dict[int, tuple[int, int, str]]:
    """Every process on this machine: pid -> (parent pid, process group, state letter), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children, their children, ...), zombies included."""
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in process_table().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is more than a zombie (killpg(pgid, 0) counts zombies too)."""
    return any(group == pgid and state != "Z" for _, group, state in process_table().values())


def stop_servers(running: list[RunningServer], grace: float | None = None) -> None:
    """Stop each server as vLLM expects: SIGTERM to its API server only, which shuts its engine
    core down itself (a SIGTERM to the whole group kills the engine core first, and the API server
    then logs an EngineDeadError and leaked semaphores). Whatever is left of a server's process
    group after `grace` seconds (default: the plan's stop_seconds; or LEFTOVER_SECONDS after its
    API server exited) gets SIGKILL."""
    if grace is None:
        grace = max((server.spec.stop_seconds for server in running), default=0.0)
    for server in running:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
        else:  # the API server is gone already: nothing would stop what it started
            _signal_group(server.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for server in running:
        try:
            server.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        leftovers_deadline = min(deadline, time.monotonic() + LEFTOVER_SECONDS)
        while _group_alive(server.process.pid) and time.monotonic() < leftovers_deadline:
            time.sleep(0.2)
        if _group_alive(server.process.pid):
            _signal_group(server.process.pid, signal.SIGKILL)
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def watch(running: list[RunningServer], stop: threading.Event) -> RunningServer | None:
    """Until a stop is asked for: returns the server that died, or None after a stop."""
    while not stop.wait(1.0):
        for server in running:
            if not server.alive():
                return server
    return None
