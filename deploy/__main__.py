"""`python -m gridpilot`: the same entry point as the `gridpilot` console script."""

from gridpilot.agent.cli import main

raise SystemExit(main())
