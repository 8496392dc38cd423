"""The log contract between the runner that writes Inspect logs and the commands that read them."""
