"""The agent's mode, normal or safe, as one object the parts that act on it share: safe mode
(agent.daemon.safemode) sets it; the planning cycle, the commands part and the publisher read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Mode:
    """The agent's mode, shared by the parts that act on it or report it: `name` is "normal"
    or "safe"; `stale`, the feeds that made it safe."""

    name: str = "normal"
    stale: tuple[str, ...] = ()

    @property
    def safe(self) -> bool:
        return self.name == "safe"
