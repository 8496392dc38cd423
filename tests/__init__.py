"""steerbench's tests: unit/ (fast, no servers), e2e/ (end to end, against simulated endpoints); shared helpers here."""
