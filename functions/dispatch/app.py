"""dispatch: findings outbox stream -> SIEM and ticketing sinks, each finding revision delivered once per sink.

Thin by design: Powertools wiring here, every decision in :mod:`chainwatch.pipeline.dispatch`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from chainwatch.app.runtime import dispatch_runtime

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = dispatch_runtime().handle(event, lambda: context.get_remaining_time_in_millis() / 1000)
    for name, value in report.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("dispatched batch", extra={"records": report.records, "deliveries": report.deliveries,
                                           "dead_lettered": report.dead_lettered,
                                           "failures": len(report.failed_sequence_numbers),
                                           "timed_out_sinks": report.timed_out})
    for letter in report.dead_letters:
        logger.warning("dead-lettered", extra={"sink": letter.sink, "finding_id": letter.finding_id,
                                               "revision": letter.revision, "reason": letter.detail[:500]})
    return report.response()
