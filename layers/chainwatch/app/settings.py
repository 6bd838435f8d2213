"""Configuration, read once, in one place (the Lambda handlers and the local run call :func:`from_env`).

Library code never reads the environment: it takes a :class:`Settings` (or its parts) as arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chainwatch.errors import ConfigError
from chainwatch.state.dynamodb import Tables


@dataclass(frozen=True)
class Settings:
    """Everything the functions need, from environment variables (names in the field docs)."""

    tables: Tables
    #: QUARANTINE_QUEUE_URL: SQS queue receiving poison records with their reason.
    quarantine_queue_url: str | None = None
    #: DEAD_LETTER_QUEUE_URL: SQS queue receiving permanently failed deliveries with the response that explains them.
    dead_letter_queue_url: str | None = None
    #: POLICY_PATH: a policy file bundled with the function (default: the library's policy).
    policy_path: str | None = None
    #: WINDOW: overrides the policy window (e.g. "1h").
    window: str | None = None
    #: SINKS_JSON: inline sink configuration (a JSON list); SINKS_PARAMETER: the SSM parameter holding it.
    sinks_json: str | None = None
    sinks_parameter: str | None = None
    #: AWS_ENDPOINT_URL (or CHAINWATCH_ENDPOINT_URL): one endpoint for every AWS client (moto locally).
    endpoint_url: str | None = None
    region: str = "us-east-1"
    #: MAX_CONFLICT_RETRIES: optimistic-lock retries per host per batch.
    max_conflict_retries: int = 5
    extra: Mapping[str, str] = field(default_factory=dict)

    def sink_configs(self, fetch_parameter: Any = None) -> list[dict[str, Any]]:
        """The sink list: inline JSON, else the SSM parameter (through ``fetch_parameter``), else none."""
        text = self.sinks_json
        if not text and self.sinks_parameter and fetch_parameter is not None:
            text = fetch_parameter(self.sinks_parameter)
        if not text:
            return []
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"sink configuration is not JSON: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError("sink configuration must be a JSON list of objects")
        return value


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is required")
    return value


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (``os.environ`` by default)."""
    source = os.environ if env is None else env
    region = source.get("AWS_REGION") or source.get("AWS_DEFAULT_REGION") or "us-east-1"
    # CHAINWATCH_ENDPOINT_URL: the same, under a name template.yaml declares (for sam local --env-vars).
    endpoint = source.get("AWS_ENDPOINT_URL") or source.get("CHAINWATCH_ENDPOINT_URL") or None
    try:
        retries = int(source.get("MAX_CONFLICT_RETRIES", "5"))
    except ValueError as exc:
        raise ConfigError("MAX_CONFLICT_RETRIES must be an integer") from exc
    return Settings(
        tables=Tables(state=_required(source, "STATE_TABLE"), findings=_required(source, "FINDINGS_TABLE"),
                      deliveries=_required(source, "DELIVERIES_TABLE"), region=region, endpoint=endpoint),
        quarantine_queue_url=source.get("QUARANTINE_QUEUE_URL") or None,
        dead_letter_queue_url=source.get("DEAD_LETTER_QUEUE_URL") or None,
        policy_path=source.get("POLICY_PATH") or None,
        window=source.get("WINDOW") or None,
        sinks_json=source.get("SINKS_JSON") or None,
        sinks_parameter=source.get("SINKS_PARAMETER") or None,
        endpoint_url=endpoint,
        region=region,
        max_conflict_retries=retries,
    )
