"""Reading and validating deployments.jsonl and benchmarks.jsonl.

Everything here is pure: no network, no Inspect import. A user mistake becomes one
`ConfigError` that names the file, the line and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

GENERATE_DEFAULTS: dict[str, Any] = {
    "temperature": 0.0,
    "max_tokens": 1000,
    "timeout": 100,
}
DEFAULT_MAX_CONNECTIONS = 20
# Without --max-connections-per-server, the cap on the sum over multipliers that share one URL
# (one --one-server deployment): what one vLLM server batches comfortably, rather than
# 20 per multiplier (100 at once for five), which queue past the 100 s request timeout.
DEFAULT_MAX_CONNECTIONS_PER_SHARED_SERVER = 32

# Generation settings a benchmark may override (Inspect GenerateConfig fields that
# change what the model is asked, not how requests are transported).
GENERATE_FIELDS = {
    "temperature",
    "max_tokens",
    "top_p",
    "top_k",
    "stop_seqs",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "system_message",
    "timeout",
    "num_choices",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "max_retries",
}

DEPLOYMENT_FIELDS = {"multiplier", "url", "key", "model", "extra_body", "steering"}
# Keys of a chat-completion request that extra_body must not override: steerbench and Inspect own them.
RESERVED_BODY_KEYS = ("model", "messages", "stream")
STEERING_FIELDS = {
    "model",
    "layer",
    "vector_sha256",
    "normalized",
    "scale",
    "vector_norm",
    "residual_norm",
    "relative_norm",
    "operation",
    "positions",
}
BENCHMARK_FIELDS = {
    "name",
    "eval_name",
    "category",
    "shots",
    "task_args",
    "subsets",
    "grader",
    "generate",
    "sandbox",
    "epochs",
    "description",
}
SANDBOXES = {"docker", "local"}
# A name or category becomes one folder under the log root.
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ConfigError(Exception):
    """A user mistake in an input file or flag: reported in one line, exit code 2."""

    def __init__(self, source: str, message: str, line: int | None = None, field: str | None = None):
        self.source, self.line, self.field, self.message = source, line, field, message
        where = source if line is None else f"{source}, line {line}"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Multiplier:
    """A steering multiplier: its value, and its text as the user wrote it (used in folder names)."""

    value: float
    label: str

    @property
    def folder(self) -> str:
        return f"multiplier_{self.label}"

    @property
    def provider(self) -> str:
        """An Inspect provider name unique to this multiplier, so that Inspect keeps one
        model identity (and one connection pool) per endpoint."""
        return "steer_m" + self.label.replace("-", "n").replace(".", "p").replace("+", "")


_DRIVE = re.compile(r"^[A-Za-z]:/")


def model_display_name(model: str) -> str:
    """What logs, CSVs and reports call a served model. vLLM names a model by the path it was
    started with, so a local path becomes its folder's name: no `//` and no home directory
    reaches a file. A hub id (`org/name`) and any other plain name stay as they are."""
    text = model.strip().replace("\\", "/")
    is_path = text.startswith(("/", "~", "./", "../")) or text in (".", "..") or bool(_DRIVE.match(text))
    if not is_path and "//" not in text:
        return text
    parts = [part for part in text.split("/") if part not in ("", ".", "..", "~")]
    return parts[-1] if parts else "model"


@dataclass(frozen=True)
class Deployment:
    multiplier: Multiplier
    url: str
    key_ref: str = field(repr=False)  # literal key or "${VAR}"; resolved late, never written
    model: str | None
    source: str
    line: int
    # merged into every chat-completion request of this multiplier, e.g. {"vllm_xargs": {"steer_multiplier": 1.5}}
    extra_body: dict[str, Any] | None = None
    steering: dict[str, Any] | None = None  # provenance written by `steerbench serve`

    @property
    def identity(self) -> str:
        """What tells deployments apart when several share a URL (one server, per-request steering)."""
        return f"{self.url}#multiplier={self.multiplier.label}"

    @property
    def key_env_var(self) -> str | None:
        m = _ENV_REF.match(self.key_ref)
        return m.group(1) if m else None

    def resolve_key(self, environ: Mapping[str, str] | None = None) -> str:
        environ = os.environ if environ is None else environ
        var = self.key_env_var
        if var is None:
            return self.key_ref
        value = environ.get(var)
        if not value:
            raise ConfigError(self.source, f"environment variable {var} is not set", self.line, "key")
        return value

    @property
    def key_display(self) -> str:
        var = self.key_env_var
        return f"${{{var}}}" if var else "<key hidden>"


@dataclass(frozen=True)
class Subset:
    name: str  # "" when the benchmark has no subsets
    task_args: dict[str, Any]


@dataclass(frozen=True)
class Benchmark:
    name: str
    eval_name: str
    category: str
    shots: int | None
    task_args: dict[str, Any]
    subsets: tuple[Subset, ...]
    grader: str | None
    generate: dict[str, Any]
    sandbox: str | None
    source: str
    line: int
    epochs: int | None = None  # instead of the task's own number of epochs


# ---------------------------------------------------------------- reading JSONL


class _Number(float):
    """A JSON number that remembers how it was written (for multiplier labels)."""

    text: str

    def __new__(cls, text: str) -> _Number:
        obj = super().__new__(cls, float(text))
        obj.text = text
        return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid number here")


def _field_holding_constant(line: str) -> str | None:
    """The field whose value is NaN or Infinity (which JSON does not allow), to name it."""
    found = re.search(r'"([^"\\]+)"\s*:\s*-?(?:NaN|Infinity)\b', line)
    return found.group(1) if found else None


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Parse a JSONL file into (line number, object) pairs; blank lines are skipped."""
    source = str(path)
    if not path.exists():
        raise ConfigError(source, "file not found")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(source, "file starts with a byte-order mark (BOM); save it as plain UTF-8", 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad_line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(source, f"not valid UTF-8 ({e.reason} at byte {e.start})", bad_line) from None
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(
                line,
                parse_float=_Number,
                parse_int=_Number,
                parse_constant=_reject_constant,
            )
        except json.JSONDecodeError as e:  # its own "line 1" would be this line: give the column only
            raise ConfigError(source, f"invalid JSON: {e.msg} at column {e.colno}", number) from None
        except ValueError as e:
            raise ConfigError(source, f"invalid JSON: {e}", number, _field_holding_constant(line)) from None
        if not isinstance(obj, dict):
            raise ConfigError(source, "each line must be one JSON object", number)
        records.append((number, _plain_numbers(obj)))
    if not records:
        raise ConfigError(source, "file is empty: expected one JSON object per line")
    return records


def _plain_numbers(value: Any, keep: bool = True) -> Any:
    """Turn _Number back into int/float everywhere except the top-level 'multiplier'."""
    if isinstance(value, dict):
        return {k: (v if (keep and k == "multiplier") else _plain_numbers(v, False)) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v, False) for v in value]
    if isinstance(value, _Number):
        f = float(value)
        return int(f) if re.fullmatch(r"-?\d+", value.text) else f
    return value


# ---------------------------------------------------------------- deployments


def parse_multiplier(raw: Any, source: str, line: int | None, field_name: str = "multiplier") -> Multiplier:
    if isinstance(raw, bool) or raw is None:
        raise ConfigError(source, 'must be a number or a numeric string, e.g. "-1.5"', line, field_name)
    if isinstance(raw, _Number):
        text = raw.text
    elif isinstance(raw, (int, float)):
        text = repr(raw)
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        raise ConfigError(source, 'must be a number or a numeric string, e.g. "-1.5"', line, field_name)
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text):
        raise ConfigError(source, f"{text!r} is not a finite decimal number", line, field_name)
    value = float(text)
    if not math.isfinite(value):
        raise ConfigError(source, f"{text!r} is not finite", line, field_name)
    if value == 0:
        value = 0.0  # -0 and 0 are one multiplier
    return Multiplier(value=value, label=text.lstrip("+"))


def _check_url(raw: Any, source: str, line: int) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(source, 'must be a non-empty string such as "https://host/v1/"', line, "url")
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https"):
        raise ConfigError(source, "must start with http:// or https://", line, "url")
    if not parts.hostname:
        raise ConfigError(source, "has no host name", line, "url")
    if parts.username or parts.password:
        raise ConfigError(source, "must not contain credentials; put the key in the 'key' field", line, "url")
    try:
        _ = parts.port  # reading it raises ValueError on a port that is not a number in range
    except ValueError:
        raise ConfigError(source, "has an invalid port", line, "url") from None
    return raw.strip()


def load_deployments(path: Path | str) -> list[Deployment]:
    path = Path(path)
    source = str(path)
    deployments: list[Deployment] = []
    seen: dict[float, int] = {}
    for line, obj in read_jsonl(path):
        unknown = sorted(set(obj) - DEPLOYMENT_FIELDS)
        if unknown:
            raise ConfigError(
                source, f"unknown field (allowed: {', '.join(sorted(DEPLOYMENT_FIELDS))})", line, unknown[0]
            )
        for required in ("multiplier", "url", "key"):
            if required not in obj:
                raise ConfigError(source, "is missing", line, required)
        multiplier = parse_multiplier(obj["multiplier"], source, line)
        if multiplier.value in seen:
            raise ConfigError(
                source, f"multiplier {multiplier.label} duplicates line {seen[multiplier.value]}", line, "multiplier"
            )
        seen[multiplier.value] = line
        url = _check_url(obj["url"], source, line)
        key = obj["key"]
        if not isinstance(key, str) or not key:
            raise ConfigError(source, 'must be a non-empty string (or "${ENV_VAR}")', line, "key")
        if key.startswith("$") and not _ENV_REF.match(key):
            raise ConfigError(source, 'an environment reference must look like "${NAME}"', line, "key")
        model = obj.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip() or "\x00" in model):
            raise ConfigError(source, "must be a non-empty string", line, "model")
        extra_body = _check_extra_body(obj.get("extra_body"), source, line)
        steering = _check_steering(obj.get("steering"), source, line)
        deployments.append(Deployment(multiplier, url, key, model, source, line, extra_body, steering))
    return sorted(deployments, key=lambda d: d.multiplier.value)


def _check_extra_body(raw: Any, source: str, line: int) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(
            source, 'must be a JSON object merged into each request, e.g. {"vllm_xargs": {...}}', line, "extra_body"
        )
    reserved = [key for key in RESERVED_BODY_KEYS if key in raw]
    if reserved:
        raise ConfigError(source, f"must not set {reserved[0]!r}: steerbench sends it", line, "extra_body")
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(source, "must hold only JSON values (no NaN or Infinity)", line, "extra_body") from None
    return raw


def _check_steering(raw: Any, source: str, line: int) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(source, f"must be an object with {', '.join(sorted(STEERING_FIELDS))}", line, "steering")
    unknown = sorted(set(raw) - STEERING_FIELDS)
    if unknown:
        raise ConfigError(
            source,
            f"has unknown field {unknown[0]!r} (allowed: {', '.join(sorted(STEERING_FIELDS))})",
            line,
            "steering",
        )
    if isinstance(raw.get("model"), str):  # provenance reaches the CSV and the report: no local path there
        return {**raw, "model": model_display_name(raw["model"])}
    return raw


# ---------------------------------------------------------------- benchmarks


def check_path_component(raw: Any, source: str, line: int, field_name: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(source, "must be a non-empty string", line, field_name)
    if raw in (".", "..") or not _SAFE_COMPONENT.match(raw):
        raise ConfigError(
            source,
            f"{raw!r} is not a safe folder name (letters, digits, '_', '-', '.', '+'; no path separators)",
            line,
            field_name,
        )
    return raw


def _check_generate(raw: Any, source: str, line: int) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(source, "must be an object of generation settings", line, "generate")
    for key, value in raw.items():
        if key not in GENERATE_FIELDS:
            raise ConfigError(
                source,
                f"unknown generation setting {key!r} (allowed: {', '.join(sorted(GENERATE_FIELDS))})",
                line,
                "generate",
            )
        if isinstance(value, bool) or (
            value is not None and key in {"max_tokens", "timeout", "seed"} and not isinstance(value, int)
        ):
            raise ConfigError(source, f"{key} must be an integer or null", line, f"generate.{key}")
    return dict(raw)


def _check_args(raw: Any, source: str, line: int, field_name: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(source, "must be an object of task arguments", line, field_name)
    return dict(raw)


def _parse_subsets(raw: Any, source: str, line: int) -> tuple[Subset, ...]:
    if raw is None:
        return (Subset("", {}),)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, "must be a non-empty list of task-argument objects", line, "subsets")
    subsets: list[Subset] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item:
            raise ConfigError(source, f"item {i} must be a non-empty object of task arguments", line, "subsets")
        # a subset is named by its argument values, e.g. {"subset": "safe"} -> "safe"
        name = "_".join(str(v) for v in item.values())
        check_path_component(name, source, line, f"subsets[{i}]")
        if name in names:
            raise ConfigError(source, f"subset {name!r} appears twice", line, "subsets")
        names.add(name)
        subsets.append(Subset(name, dict(item)))
    return tuple(subsets)


def load_benchmarks(path: Path | str) -> list[Benchmark]:
    path = Path(path)
    source = str(path)
    benchmarks: list[Benchmark] = []
    seen: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        unknown = sorted(set(obj) - BENCHMARK_FIELDS)
        if unknown:
            raise ConfigError(
                source, f"unknown field (allowed: {', '.join(sorted(BENCHMARK_FIELDS))})", line, unknown[0]
            )
        for required in ("name", "eval_name", "category"):
            if required not in obj:
                raise ConfigError(source, "is missing", line, required)
        name = check_path_component(obj["name"], source, line, "name")
        if name.lower() in seen:
            raise ConfigError(source, f"benchmark {name!r} duplicates line {seen[name.lower()]}", line, "name")
        seen[name.lower()] = line
        category = check_path_component(obj["category"], source, line, "category")
        eval_name = obj["eval_name"]
        if not isinstance(eval_name, str) or not eval_name.strip() or "\x00" in eval_name:
            raise ConfigError(source, 'must be an Inspect task spec such as "inspect_evals/gsm8k"', line, "eval_name")
        shots = obj.get("shots")
        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 0):
            raise ConfigError(source, "must be a non-negative integer or null", line, "shots")
        grader = obj.get("grader")
        if grader is not None and (not isinstance(grader, str) or ("/" not in grader and grader != "self")):
            raise ConfigError(
                source,
                'must be an Inspect model name such as "anthropic/claude-3-7-sonnet-20250219", or "self"',
                line,
                "grader",
            )
        sandbox = obj.get("sandbox")
        if sandbox is not None and sandbox not in SANDBOXES:
            raise ConfigError(source, f"must be one of {sorted(SANDBOXES)}", line, "sandbox")
        epochs = obj.get("epochs")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ConfigError(source, "must be a positive integer or null", line, "epochs")
        benchmarks.append(
            Benchmark(
                name=name,
                eval_name=eval_name.strip(),
                category=category,
                shots=shots,
                task_args=_check_args(obj.get("task_args"), source, line, "task_args"),
                subsets=_parse_subsets(obj.get("subsets"), source, line),
                grader=grader,
                generate=_check_generate(obj.get("generate"), source, line),
                sandbox=sandbox,
                source=source,
                line=line,
                epochs=epochs,
            )
        )
    return benchmarks
