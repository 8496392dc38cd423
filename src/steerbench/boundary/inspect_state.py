"""Inspect's private state: the sample (and eval) a request belongs to, the log reader's context, a model's retry wait and request name."""

from __future__ import annotations

from typing import Any


def active_sample() -> tuple[str, str, str] | None:
    """(task, sample id, epoch) of the sample running in this context; None outside a sample."""
    from inspect_ai.log._samples import sample_active

    active = sample_active()
    if active is None:
        return None
    return str(active.task), str(active.sample.id), str(active.epoch)


def active_eval_id() -> str | None:
    """The id of the eval whose sample is running in this context (as Inspect's hooks name it)."""
    from inspect_ai.log._samples import sample_active

    return getattr(sample_active(), "eval_id", None)


def deserializing_context() -> Any:
    """The context Inspect's own reader validates a log header with (None where it has none)."""
    try:
        from inspect_ai._util.constants import get_deserializing_context
    except ImportError:  # pragma: no cover
        return None
    return get_deserializing_context()


def set_retry_wait(model: Any, seconds: float) -> None:
    """Wait `seconds` between retries of a failed request, instead of Inspect's exponential
    backoff (3 s, doubling, at most 30 min): for tests and local servers."""
    from tenacity import wait_fixed

    wait = wait_fixed(seconds)
    model.api.retry_wait = lambda: wait


def send_model_name(model: Any, served_model: str) -> None:
    """Send `served_model` as every request's "model" while Inspect names the model otherwise
    (an OpenAI-compatible API sends the part of its name after the service by default)."""
    model.api.service_model_name = lambda: served_model
