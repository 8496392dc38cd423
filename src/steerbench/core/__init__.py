"""The pure core: reading the two input files, cell keys, paths and the plan. Never imports Inspect."""
