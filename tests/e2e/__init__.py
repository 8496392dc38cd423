"""End-to-end tests: real runs against simulated endpoints, scripts, S3, the demo."""
