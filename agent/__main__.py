"""`python -m agent`: the same entry point as the `gridpilot` console script."""

from agent.cli import main

raise SystemExit(main())
