"""Results from the logs: the aggregate CSV, the status grid, per-sample scores, statistics, flags, the analysis."""
