"""Resolving benchmarks.jsonl's `eval_name` to Inspect task functions and their parameters."""
