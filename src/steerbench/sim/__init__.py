"""The simulator, the demo and the synthetic offline data: tests and demos only, never imported by the rest of steerbench (except the CLI's demo and simulate)."""
