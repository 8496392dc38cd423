"""Serving steered models: steering vectors, the vLLM plugin that adds them, and the servers that carry it.

Layer: serve. It imports only the pure core; vLLM and torch are imported inside the functions that
need them, so the base install (without the `serve` extras) can still plan and dry-run.
"""
