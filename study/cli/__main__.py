"""Run the command line as ``python -m study.cli``."""

from study.cli import main

main()
