"""`python -m mlctl` runs the CLI."""

from mlctl.cli import main

main()
