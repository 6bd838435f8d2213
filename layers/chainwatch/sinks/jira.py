"""Jira Cloud REST v3: one issue per chain, later revisions as comments.

``POST /rest/api/3/issue`` opens the issue: summary (the title), an Atlassian Document Format description holding
the story (timeline table, process tree as a code block, files, quarantine and Gatekeeper, egress, links between
stages and a triage playbook), labels ``chainwatch``, ``an1316``, the host and ``finding-<id>``, and a priority
mapped from the severity. A later revision of the same chain is ``POST /rest/api/3/issue/{key}/comment`` with
the updated story. Jira is the system of record: before creating, the sink searches ``/rest/api/3/search/jql`` for
``labels = "finding-<id>"`` (retried and rate-limited like every call) and caches what it finds in the ticket map,
so a fresh map (a re-created stack, a restored table, an expired item) comments on the existing issue instead of
opening a second one. Before commenting, the issue's comments are read and a revision already there
("revision N of <finding id>") is not added twice. The search is eventually consistent, so a create whose reply
was lost is not retried at once: the attempt time is recorded in the map and the lookup waits until
``search_index_lag`` seconds have passed (see :mod:`chainwatch.sinks._ticketing`).

Configuration (``kind: jira``)::

    url: https://example.atlassian.net       # required
    project_key: SEC                         # required
    issue_type: Task                         # default Task
    token_secret: chainwatch/jira            # required: {"email": ..., "api_token": ...} or the token alone
    email: secops-bot@example.com            # when the secret holds only the token
    priority_map: {critical: Highest, high: High, medium: Medium, low: Low, informational: Lowest}
    labels: [macos]                          # extra labels
    extra_fields: {components: [{name: Detection}]}
    accept_canary: false                     # canary findings open no issue unless true
    alerts_only: true                        # non-alert findings open no issue (still added to an existing one)
    max_document_chars: 32000                # bound of the ADF JSON of a description or comment
    search_index_lag: 60                     # seconds before a new issue shows in JQL search (lost-create lookup)

Authentication is HTTP Basic ``email:api_token``; neither appears in a result, an error or a log line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from chainwatch.errors import ConfigError
from chainwatch.findings.render import DEFAULT_MAX_CHARS, clip, to_adf
from chainwatch.sinks._ticketing import (
    SEVERITY_NAMES,
    BasicAuthTicketSink,
    Ticket,
    TicketTransientError,
    call,
    json_object,
    labels_safe,
    number,
    one_line,
    revision_marker,
    secret_fields,
    severity_lookup,
)
from chainwatch.sinks.base import Delivery, SinkContext, register

DEFAULT_PRIORITIES = {"critical": "Highest", "fatal": "Highest", "high": "High", "medium": "Medium", "low": "Low",
                      "informational": "Lowest"}
#: Jira rejects a description or comment over 32 767 characters; the ADF JSON is kept under this.
DEFAULT_MAX_DOCUMENT = 32_000
_SUMMARY = 255
_ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*-[0-9]+$")


def _adf_text(node: Any) -> str:
    """The text of an ADF node, concatenated (bounded by Jira's own body limit)."""
    if not isinstance(node, Mapping):
        return ""
    own = node.get("text", "") if node.get("type") == "text" and isinstance(node.get("text"), str) else ""
    content = node.get("content")
    return own + "".join(_adf_text(child) for child in content) if isinstance(content, list) else own


def _document(delivery: Delivery, limit: int, intro: tuple[str, ...] = ()) -> dict[str, Any]:
    """The story as ADF, shrunk until its JSON fits ``limit`` (tables and text nodes add markup per character)."""
    budget = DEFAULT_MAX_CHARS
    while True:
        document = to_adf(delivery.document, max_chars=budget, intro=intro)
        if len(json.dumps(document, ensure_ascii=False)) <= limit or budget <= 500:
            return document
        budget //= 2


@register
class JiraSink(BasicAuthTicketSink):
    """Jira Cloud issues (REST v3, ADF), one per chain; see the module docstring for the options."""

    kind = "jira"
    #: Jira's /search/jql "doesn't immediately return newly created issues" (tens of seconds).
    DEFAULT_INDEX_LAG: ClassVar[float] = 60.0
    #: Each delivery is its own request (no batch API): keep a send short enough for the time budget.
    max_batch: ClassVar[int] = 25

    def __init__(self, name: str, config: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, config, context)
        self.url = self.base_url()
        self.project = str(self.option("project_key", required=True))
        self.issue_type = str(self.option("issue_type", "Task"))
        self.secret_name = str(self.option("token_secret", required=True))
        priorities = self.option("priority_map", DEFAULT_PRIORITIES)
        if priorities is not None and not isinstance(priorities, Mapping):
            raise ConfigError(f"sink {name!r}: priority_map must be a mapping of severity to Jira priority name")
        self.priorities: Mapping[Any, Any] = priorities or {}
        extra_labels = self.option("labels", [])
        if not isinstance(extra_labels, list):
            raise ConfigError(f"sink {name!r}: labels must be a list")
        self.extra_labels = [str(label) for label in extra_labels]
        extra = self.option("extra_fields", {})
        if not isinstance(extra, Mapping):
            raise ConfigError(f"sink {name!r}: extra_fields must be a mapping")
        self.extra_fields: Mapping[str, Any] = extra
        self.max_document = int(number(self.option("max_document_chars", DEFAULT_MAX_DOCUMENT),
                                       f"sink {name!r}: max_document_chars", minimum=2000))

    # -- secrets -------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        what = f"sink {self.name!r}: secret {self.secret_name!r}"
        value = secret_fields(self.context.secret(self.secret_name), what)
        if isinstance(value, str):
            email, token = self.option("email"), value
        else:
            email = value.get("email") or self.option("email")
            token = value.get("api_token") or value.get("token") or ""
        if not email or not token:
            raise ConfigError(f"{what} needs an api_token, and an email (in the secret or the sink's options)")
        self.use_basic_auth(email, token, what)

    # -- content -------------------------------------------------------------------------------------------------

    def fields(self, delivery: Delivery) -> dict[str, Any]:
        """The ``fields`` of the create request."""
        prefix = "[CANARY] " if delivery.canary else ""
        summary = one_line(prefix + delivery.title, _SUMMARY)
        labels = ["chainwatch", "an1316", clip(delivery.host, 200), f"finding-{delivery.finding_id}",
                  *self.extra_labels]
        if delivery.canary:
            labels.append("canary")
        fields: dict[str, Any] = {
            **self.extra_fields,
            "project": {"key": self.project},
            "issuetype": {"name": self.issue_type},
            "summary": summary,
            "description": _document(delivery, self.max_document),
            "labels": labels_safe(labels),
        }
        priority = severity_lookup(self.priorities, delivery.severity_id)
        if priority:
            fields["priority"] = {"name": str(priority)}
        return fields

    # -- vendor calls --------------------------------------------------------------------------------------------

    def create(self, delivery: Delivery) -> Ticket:
        response = call(self.context, "POST", f"{self.url}/rest/api/3/issue", what="Jira create issue",
                        scrub=self.scrub, headers=self._headers(), body={"fields": self.fields(delivery)},
                        verify=self.verify)
        key = json_object(response).get("key")
        if not isinstance(key, str) or not _ISSUE_KEY.match(key):
            # Created, but we cannot tell which issue: treat like a lost reply (claim kept, found later by label).
            raise TicketTransientError(f"Jira create issue: HTTP {response.status_code} without an issue key",
                                       ambiguous=True)
        return Ticket(key, key)

    def update(self, ticket: Ticket, delivery: Delivery) -> str:
        severity = SEVERITY_NAMES.get(delivery.severity_id, "unknown")
        kind = "alert" if delivery.is_alert else "non-alert"
        intro = (f"chainwatch update: revision {delivery.revision} of {delivery.finding_id} "
                 f"({kind}, severity {severity})",)
        body = {"body": _document(delivery, self.max_document, intro)}
        response = call(self.context, "POST", f"{self.url}/rest/api/3/issue/{quote(ticket.key, safe='')}/comment",
                        what=f"Jira comment on {ticket.key}", scrub=self.scrub, headers=self._headers(), body=body,
                        verify=self.verify)
        comment = clip(json_object(response).get("id") or "?", 40)
        return f"commented on {ticket.key} (comment {comment}, revision {delivery.revision})"

    def has_revision(self, ticket: Ticket, delivery: Delivery) -> bool:
        response = call(self.context, "GET", f"{self.url}/rest/api/3/issue/{quote(ticket.key, safe='')}/comment",
                        what=f"Jira comments of {ticket.key}", scrub=self.scrub, headers=self._headers(),
                        params={"startAt": "0", "maxResults": "100", "orderBy": "-created"}, verify=self.verify)
        comments = json_object(response).get("comments")
        marker = revision_marker(delivery)
        return isinstance(comments, list) and any(
            isinstance(c, Mapping) and marker in _adf_text(c.get("body")) for c in comments)

    def lookup(self, delivery: Delivery) -> Ticket | None:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", delivery.finding_id):
            return None  # never splice an id that could break out of the JQL string
        jql = f'project = "{self.project}" AND labels = "finding-{delivery.finding_id}" ORDER BY created ASC'
        response = call(self.context, "GET", f"{self.url}/rest/api/3/search/jql", what="Jira search",
                        scrub=self.scrub, headers=self._headers(),
                        params={"jql": jql, "fields": "key", "maxResults": "1"}, verify=self.verify)
        issues = json_object(response).get("issues")
        if isinstance(issues, list) and issues and isinstance(issues[0], Mapping):
            key = issues[0].get("key")
            if isinstance(key, str) and _ISSUE_KEY.match(key):
                return Ticket(key, key)
        return None
