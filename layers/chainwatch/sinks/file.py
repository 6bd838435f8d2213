"""A local file sink: one OCSF finding per line (the local run's stand-in, and useful for air-gapped hand-off)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from chainwatch.sinks.base import Delivery, DeliveryResult, Outcome, Sink, register


@register
class FileSink(Sink):
    """Appends each delivery as a JSON line ``{"finding_id", "revision", "finding"}`` to ``path``."""

    kind = "file"
    max_batch = 1000

    def send(self, deliveries: Sequence[Delivery]) -> list[DeliveryResult]:
        path = Path(self.option("path", required=True))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as handle:
                for delivery in deliveries:
                    handle.write(orjson.dumps({"finding_id": delivery.finding_id, "revision": delivery.revision,
                                               "finding": delivery.document}) + b"\n")
        except OSError as exc:
            # A full disk or a permission problem may clear; the dispatcher retries what was not delivered.
            return [DeliveryResult(d.finding_id, d.revision, Outcome.FAILED_TRANSIENT, f"cannot write {path}: "
                                   f"{exc.strerror or exc}") for d in deliveries]
        return [DeliveryResult(d.finding_id, d.revision, Outcome.DELIVERED, f"appended to {path}")
                for d in deliveries]
