"""Run the local server in the foreground: ``python -m study.local_server --port 8000``."""

from study.local_server._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
