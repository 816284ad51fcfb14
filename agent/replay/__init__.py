"""The replay: recorded telemetry through the live planner and guard on a simulated plant, the
baselines and the hindsight bound beside it, and its report; also the one-day plan of
`gridpilot plan`. It imports what every use shares (`gridpilot.agent`), never the daemon.
"""
