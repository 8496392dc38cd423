"""`python -m steerbench.cli`: the same as the `steerbench` command."""

from .main import main

if __name__ == "__main__":
    main()
