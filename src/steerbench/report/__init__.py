"""The report: a self-contained report.html, its figures, and the one plotting style."""
