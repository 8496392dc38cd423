"""Fast tests: no servers, no subprocesses that run evals (the whole folder in well under a minute)."""
