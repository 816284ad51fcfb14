"""The daemon: `gridpilot run`, the systemd service on the site controller.

Its loops and inputs, what it publishes, the SLA ledger, the guard's loop, metrics, logs and the
devices it drives. It imports what every use shares (`gridpilot.agent`), never the replay or
the study.
"""
