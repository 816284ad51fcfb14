"""Where the agent meets its broker: the topics it uses, with the site's name filled in, how
each reading's value is found in a gateway's payload, and how to log in."""

from __future__ import annotations

from dataclasses import dataclass

from gridpilot.adapters.mqtt import BrokerOptions, TlsFiles
from gridpilot.adapters.payloads import FieldMap
from gridpilot.agent.settings import FieldMapSettings, Settings


@dataclass(frozen=True, slots=True)
class Topics:
    """The configured topics with the site's name filled in."""

    meter_prefix: str
    price: str
    forecast: str
    hashprice: str
    event: str
    override_prefix: str
    asic_command: str
    gpu_command: str
    notice: str
    plan: str
    mode: str
    status: str
    # The grid programs (agent.daemon.programs, agent.daemon.reserves).
    system_load: str
    frequency: str
    cp_alert: str
    award: str
    deploy: str
    recall: str
    ancillary_prices: str
    offer: str
    obligation: str
    available: str

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        t = settings.mqtt.topics

        def fill(topic: str) -> str:
            return topic.replace("{site}", settings.site.name)

        return cls(
            meter_prefix=fill(t.meter)[:-1],
            price=fill(t.price),
            forecast=fill(t.forecast),
            hashprice=fill(t.hashprice),
            event=fill(t.event),
            override_prefix=fill(t.override)[:-1],
            asic_command=fill(t.asic_command),
            gpu_command=fill(t.gpu_command),
            notice=fill(t.notice),
            plan=fill(t.plan),
            mode=fill(t.mode),
            status=fill(t.status),
            system_load=fill(t.system_load),
            frequency=fill(t.frequency),
            cp_alert=fill(t.cp_alert),
            award=fill(t.award),
            deploy=fill(t.deploy),
            recall=fill(t.recall),
            ancillary_prices=fill(t.ancillary_prices),
            offer=fill(t.offer),
            obligation=fill(t.obligation),
            available=fill(t.available),
        )

    def subscriptions(self) -> list[str]:
        return [
            self.meter_prefix + "+",
            self.price,
            self.forecast,
            self.hashprice,
            self.event,
            self.override_prefix + "+",
            *self.programs().values(),
        ]

    def programs(self) -> dict[str, str]:
        """The grid programs' input topics by the kind of input each carries (the `topic`
        label of their rejects)."""
        return {
            "system_load": self.system_load,
            "frequency": self.frequency,
            "cp_alert": self.cp_alert,
            "award": self.award,
            "deploy": self.deploy,
            "recall": self.recall,
            "ancillary_prices": self.ancillary_prices,
        }


def field_map(fields: FieldMapSettings) -> FieldMap:
    return FieldMap(
        value_path=tuple(fields.value.split(".")) if fields.value else (),
        scale=fields.scale,
        ts_path=tuple(fields.ts.split(".")) if fields.ts else None,
    )


def broker_options(settings: Settings, topics: Topics) -> BrokerOptions:
    mqtt = settings.mqtt
    tls = mqtt.tls
    return BrokerOptions(
        host=mqtt.host,
        port=mqtt.port,
        client_id=mqtt.client_id or f"gridpilot-{settings.site.name}",
        will_topic=topics.status,
        will_payload=b"offline",
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        tls=TlsFiles(tls.ca_file, tls.cert_file, tls.key_file) if tls else None,
        keepalive_s=mqtt.keepalive_s,
        reconnect_first_s=mqtt.reconnect_first_s,
        reconnect_max_s=mqtt.reconnect_max_s,
    )
