"""The boundary: the only code that touches Inspect's private modules, httpx internals or inspect_evals internals.

A new inspect-ai (or inspect_evals, or httpx) version means reading this package, and nothing else:

- `http_layers`: layers between an Inspect OpenAI-compatible model and its httpx transport;
- `tasks`: loading a task spec, looking a task function up, creating a task as inside an eval;
- `inspect_state`: the sample a request belongs to, the log reader's context, a model's retry wait;
- `warmup`: what forked workers inherit (preloaded modules, registries, caches);
- `filesystem`: Inspect's fsspec wrapper, for remote log roots;
- `offline`: switches for running inspect_evals tasks offline (no retry back-off, a trusted GPQA CSV).
"""
