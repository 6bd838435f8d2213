"""correlate: Kinesis macOS telemetry -> AN1316 chain state (DynamoDB) and the findings outbox.

Thin by design: Powertools wiring here, every decision in :mod:`chainwatch.pipeline.correlate`. Returns a partial
batch response; only transient failures are reported (poison records go to quarantine with their reason).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from chainwatch.app.runtime import correlate_runtime

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = correlate_runtime().handle(event)
    for name, value in (("Records", report.records), ("Events", report.events),
                        ("HostsTouched", report.hosts_touched), ("HostsSkipped", report.hosts_skipped),
                        ("Quarantined", report.quarantined), ("StateConflicts", report.conflicts),
                        ("StateEntriesTrimmed", report.trimmed),
                        ("StateResets", len(report.state_resets)), ("StateCompactions", report.compactions),
                        ("FindingsWritten", report.findings_written),
                        ("BatchItemFailures", len(report.failed_sequence_numbers))):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for reset in report.state_resets:
        logger.warning("stored host state was unreadable and was started afresh", extra={"detail": reset})
    logger.info("correlated batch", extra={"records": report.records, "events": report.events,
                                           "findings_written": report.findings_written,
                                           "failures": len(report.failed_sequence_numbers)})
    return report.response()
