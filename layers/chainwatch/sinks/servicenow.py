"""ServiceNow Table API: one incident per chain, later revisions as work notes.

``POST /api/now/table/incident`` opens the incident with ``correlation_id`` = the finding id, a short description
(the title), the plain-text story as description, and urgency/impact mapped from the severity. A later revision is
``PATCH /api/now/table/incident/{sys_id}`` adding a work note with the updated story. The finding-to-``sys_id``
mapping is cached in the ticket map, but ServiceNow is the system of record: before creating, the sink queries
``correlation_id=<finding id>`` (consistent, retried and rate-limited like every call) and works on the incident it
finds, so a fresh map never opens a second incident; before adding a work note it queries ``sys_journal_field``
for the revision's marker ("revision N of <finding id>") so a revision is never noted twice. The query is
consistent, so ``search_index_lag`` defaults to 0: after a lost create reply the lookup runs at once.

Configuration (``kind: servicenow``)::

    url: https://example.service-now.com     # required
    table: incident                          # default incident
    credentials_secret: chainwatch/snow      # required: {"username": ..., "password": ...} or the password alone
    username: chainwatch.integration         # when the secret holds only the password
    severity_map: {critical: {urgency: 1, impact: 1}, high: {urgency: 1, impact: 2}, ...}
    fields: {assignment_group: SOC, category: security}   # static fields of every new incident
    description_limit: 4000                  # the incident description column's default size
    work_notes_limit: 16000
    accept_canary: false
    alerts_only: true

Authentication is HTTP Basic; the credentials never appear in a result, an error or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from chainwatch.errors import ConfigError
from chainwatch.findings.render import clip, to_plain
from chainwatch.sinks._ticketing import (
    SEVERITY_NAMES,
    BasicAuthTicketSink,
    Ticket,
    TicketTransientError,
    call,
    json_object,
    number,
    one_line,
    revision_marker,
    secret_fields,
    severity_lookup,
)
from chainwatch.sinks.base import Delivery, SinkContext, register

#: ServiceNow's 1 (High) .. 3 (Low) scale; priority is computed by the instance from urgency x impact.
DEFAULT_SEVERITY_MAP: dict[str, dict[str, int]] = {
    "fatal": {"urgency": 1, "impact": 1},
    "critical": {"urgency": 1, "impact": 1},
    "high": {"urgency": 1, "impact": 2},
    "medium": {"urgency": 2, "impact": 2},
    "low": {"urgency": 3, "impact": 2},
    "informational": {"urgency": 3, "impact": 3},
}
_SHORT_DESCRIPTION = 160
_SYS_ID = re.compile(r"^[0-9a-f]{32}$")
#: Journal fields render ``[code]...[/code]`` as raw HTML on many instances (glide.ui.security.allow_codetag).
_CODE_TAG = re.compile(r"\[(/?)(code)\]", re.IGNORECASE)
_SEP = "|"  # sys_id is 32 hex characters, so the first "|" always ends it


def no_code_tags(text: str) -> str:
    """``text`` with ServiceNow's ``[code]`` HTML escape hatch neutralized (``[code]`` becomes ``(code)``)."""
    return _CODE_TAG.sub(r"(\1\2)", text)


@register
class ServiceNowSink(BasicAuthTicketSink):
    """ServiceNow incidents (Table API), one per chain; see the module docstring for the options."""

    kind = "servicenow"
    max_batch: ClassVar[int] = 25

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        self.url = self.base_url()
        table = str(self.option("table", "incident"))
        if not re.fullmatch(r"[a-z0-9_]+", table):
            raise ConfigError(f"sink {name!r}: table must be a table name such as incident")
        self.table = table
        self.secret_name = str(self.option("credentials_secret", required=True))
        severity_map = self.option("severity_map", DEFAULT_SEVERITY_MAP)
        if not isinstance(severity_map, Mapping):
            raise ConfigError(f"sink {name!r}: severity_map must map severities to {{urgency, impact}}")
        self.severity_map: Mapping[Any, Any] = severity_map
        fields = self.option("fields", {})
        if not isinstance(fields, Mapping):
            raise ConfigError(f"sink {name!r}: fields must be a mapping")
        self.static_fields: Mapping[str, Any] = fields
        self.description_limit = int(number(self.option("description_limit", 4000),
                                            f"sink {name!r}: description_limit", minimum=500))
        self.work_notes_limit = int(number(self.option("work_notes_limit", 16000),
                                           f"sink {name!r}: work_notes_limit", minimum=500))
        self.correlation_display = str(self.option("correlation_display", "chainwatch"))[:100]

    # -- secrets -------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        what = f"sink {self.name!r}: secret {self.secret_name!r}"
        value = secret_fields(self.context.secret(self.secret_name), what)
        if isinstance(value, str):
            username, password = self.option("username"), value
        else:
            username = value.get("username") or value.get("user") or self.option("username")
            password = value.get("password") or ""
        if not username or not password:
            raise ConfigError(f"{what} needs a password, and a username (in the secret or the sink's options)")
        self.use_basic_auth(username, password, what)

    # -- the map stores "<sys_id>|<number>": updates need the id, people the number ---------------------------------

    def map_value(self, ticket: Ticket) -> str:
        return f"{ticket.key}{_SEP}{ticket.display}"

    def ticket_from_map(self, value: str) -> Ticket:
        key, _, display = value.partition(_SEP)
        return Ticket(key, display or key)

    # -- content -------------------------------------------------------------------------------------------------

    def record(self, delivery: Delivery) -> dict[str, Any]:
        """The fields of the new incident."""
        prefix = "[CANARY] " if delivery.canary else ""
        levels = severity_lookup(self.severity_map, delivery.severity_id)
        record: dict[str, Any] = {
            **self.static_fields,
            "short_description": one_line(prefix + delivery.title, _SHORT_DESCRIPTION),
            "description": no_code_tags(to_plain(delivery.document, max_chars=self.description_limit)),
            "correlation_id": delivery.finding_id[:100],
            "correlation_display": self.correlation_display,
        }
        if isinstance(levels, Mapping):
            for key in ("urgency", "impact"):
                if levels.get(key) is not None:
                    record[key] = str(levels[key])
        return record

    # -- vendor calls --------------------------------------------------------------------------------------------

    def _ticket(self, result: Any) -> Ticket | None:
        if not isinstance(result, Mapping):
            return None
        sys_id, number = result.get("sys_id"), result.get("number")
        if not isinstance(sys_id, str) or not _SYS_ID.match(sys_id):
            return None
        return Ticket(sys_id, clip(number, 40) if isinstance(number, str) and number else sys_id)

    def create(self, delivery: Delivery) -> Ticket:
        response = call(self.context, "POST", f"{self.url}/api/now/table/{self.table}",
                        what="ServiceNow create incident", scrub=self.scrub, headers=self._headers(),
                        body=self.record(delivery), params={"sysparm_fields": "sys_id,number"}, verify=self.verify)
        ticket = self._ticket(json_object(response).get("result"))
        if ticket is None:
            # Created, but we cannot tell which record: treat like a lost reply (found later by correlation_id).
            raise TicketTransientError(f"ServiceNow create: HTTP {response.status_code} without a sys_id",
                                       ambiguous=True)
        return ticket

    def update(self, ticket: Ticket, delivery: Delivery) -> str:
        severity = SEVERITY_NAMES.get(delivery.severity_id, "unknown")
        kind = "alert" if delivery.is_alert else "non-alert"
        intro = (f"chainwatch update: revision {delivery.revision} of {delivery.finding_id} "
                 f"({kind}, severity {severity})",)
        notes = no_code_tags(to_plain(delivery.document, max_chars=self.work_notes_limit, intro=intro))
        call(self.context, "PATCH", f"{self.url}/api/now/table/{self.table}/{quote(ticket.key, safe='')}",
             what=f"ServiceNow update {ticket.display}", scrub=self.scrub, headers=self._headers(),
             body={"work_notes": notes}, params={"sysparm_fields": "sys_id,number"}, verify=self.verify)
        return f"added work notes to {ticket.display} (revision {delivery.revision})"

    def has_revision(self, ticket: Ticket, delivery: Delivery) -> bool:
        # Journal entries (work notes) live in sys_journal_field, keyed by the record's sys_id.
        marker = revision_marker(delivery)
        response = call(self.context, "GET", f"{self.url}/api/now/table/sys_journal_field",
                        what=f"ServiceNow work notes of {ticket.display}", scrub=self.scrub, headers=self._headers(),
                        params={"sysparm_query": f"element_id={ticket.key}^element=work_notes^valueLIKE{marker}",
                                "sysparm_limit": "1", "sysparm_fields": "sys_id"}, verify=self.verify)
        results = json_object(response).get("result")
        return isinstance(results, list) and bool(results)

    def lookup(self, delivery: Delivery) -> Ticket | None:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", delivery.finding_id):
            return None  # '^' would start another encoded-query condition
        response = call(self.context, "GET", f"{self.url}/api/now/table/{self.table}",
                        what="ServiceNow lookup", scrub=self.scrub, headers=self._headers(),
                        params={"sysparm_query": f"correlation_id={delivery.finding_id[:100]}^ORDERBYsys_created_on",
                                "sysparm_limit": "1", "sysparm_fields": "sys_id,number"}, verify=self.verify)
        results = json_object(response).get("result")
        if isinstance(results, list) and results:
            return self._ticket(results[0])
        return None
