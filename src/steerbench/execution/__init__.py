"""Running a plan: preflight, endpoints, worker processes, locks, the replay journal, key redaction, prefetch, check."""
