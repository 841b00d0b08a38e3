"""``python -m metaal``: the CLI, from whichever checkout is on sys.path (worktrees, no install)."""
from metaal.cli import main

main()
