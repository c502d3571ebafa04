"""Run the command line as ``python -m study.cli``."""

from study.cli import main

if __name__ == "__main__":
    main()
