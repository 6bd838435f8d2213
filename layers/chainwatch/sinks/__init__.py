"""Delivery targets behind one contract (:mod:`chainwatch.sinks.base`). Importing this package registers every
built-in sink kind."""

from chainwatch.sinks import file, security_hub, security_lake  # noqa: F401 - registers the sinks
from chainwatch.sinks.base import REGISTRY, Delivery, DeliveryResult, Outcome, Sink, build_sinks, register

__all__ = ["REGISTRY", "Delivery", "DeliveryResult", "Outcome", "Sink", "build_sinks", "register"]
