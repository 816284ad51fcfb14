"""What the site owes of each reserve product and what it could give, every second.

Per product the site is qualified for: the obligation (the MW awarded for the hour now), the MW
deployed and not recalled, and what is available (the draw at the meter of the awake miners
qualified for it, at their commanded power: what a deployment could drop now; a miner
qualified for two products counts in both). The headroom is available plus deployed less the
obligation: a deployed MW serves its award asleep. In metrics (watts) and on `as/obligation`
and `as/available` (MW), published at QoS 0, not retained: they are stale a second later.
"""

from __future__ import annotations

import json
from datetime import datetime

from gridpilot.adapters.actuation import Publish
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.topics import Topics

PUBLISH_EVERY_S = 1.0


class Obligations:
    """Reports `products` through `publish` (QoS 0) on the topics and in the metrics."""

    def __init__(
        self,
        products: tuple[str, ...],
        *,
        state: SiteState,
        setpoints: Setpoints,
        metrics: Metrics,
        topics: Topics,
        publish: Publish,
    ) -> None:
        self.products = products
        self._programs = state.programs
        self._setpoints = setpoints
        self._metrics = metrics
        self._topics = topics
        self._publish = publish
        self._reported: datetime | None = None
        for product in products:
            for gauge in (
                metrics.reserve_obligation,
                metrics.reserve_available,
                metrics.reserve_deployed,
                metrics.reserve_headroom,
            ):
                gauge.labels(product).set(0)

    def due(self, now: datetime) -> bool:
        """Whether a report is due: a second after the last (a little less, so that a loop
        woken on the second does not skip one); never for a site without products."""
        last = self._reported
        if not self.products:
            return False
        return last is None or (now - last).total_seconds() >= PUBLISH_EVERY_S - 0.05

    def available_mw(self, product: str) -> float:
        setpoints = self._setpoints
        return (
            sum(
                float(setpoints.units_on[i])
                * setpoints.asic_watts_per_unit(i)
                * group.overhead_factor
                for i, group in enumerate(setpoints.asic)
                if product in group.reserve_products
            )
            / 1e6
        )

    async def report(self, now: datetime) -> None:
        """The metrics and the two topics, as of `now`."""
        self._reported = now
        programs, m = self._programs, self._metrics
        obligation, available, deployed = {}, {}, {}
        for product in self.products:
            obligation[product] = float(programs.awards.window(product, now, 1, 3_600.0)[0])
            deployed[product] = programs.deployed_mw(product)
            available[product] = self.available_mw(product)
            headroom = available[product] + deployed[product] - obligation[product]
            m.reserve_obligation.labels(product).set(obligation[product] * 1e6)
            m.reserve_available.labels(product).set(available[product] * 1e6)
            m.reserve_deployed.labels(product).set(deployed[product] * 1e6)
            m.reserve_headroom.labels(product).set(headroom * 1e6)
        holding = [
            {
                "id": h.id,
                "product": h.product,
                "mw": h.mw,
                "source": h.source,
                "start": h.start.isoformat(),
            }
            for h in programs.holds.values()
        ]
        at = now.isoformat()
        owed = {
            "at": at,
            "mw": _rounded(obligation),
            "deployed_mw": _rounded(deployed),
            "deployments": holding,
        }
        await self._publish(self._topics.obligation, json.dumps(owed).encode())
        offered = {"at": at, "mw": _rounded(available)}
        await self._publish(self._topics.available, json.dumps(offered).encode())


def _rounded(mw: dict[str, float]) -> dict[str, float]:
    return {p: round(v, 6) for p, v in mw.items()}
