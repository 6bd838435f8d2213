"""Delivery targets behind one contract (:mod:`chainwatch.sinks.base`). Importing this package registers every
built-in sink kind."""

from chainwatch.sinks import (  # noqa: F401 - importing registers each sink kind
    elasticsearch,
    file,
    jira,
    pagerduty,
    security_hub,
    security_lake,
    sentinel,
    servicenow,
    splunk_hec,
)
from chainwatch.sinks.base import REGISTRY, Delivery, DeliveryResult, Outcome, Sink, build_sinks, register

__all__ = ["REGISTRY", "Delivery", "DeliveryResult", "Outcome", "Sink", "build_sinks", "register"]
