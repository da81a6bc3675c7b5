"""Incidents and post-incident analysis (D12), pure: no files, sockets, SQL or clocks.

* :mod:`.lifecycle`   — :class:`Incident`, statuses and their transitions, severities, what an
  alert change does (:func:`on_alert`), action items
* :mod:`.timeline`    — the timeline as a selection of audit entries (:func:`assemble`)
* :mod:`.correlation` — candidates from the audit log, explicit features, the ranking and the
  "no change caused this" verdict (:func:`rank`)
* :mod:`.impact`      — detection / acknowledge / restore times, affected requests
* :mod:`.report`      — the report document and its offline check against the audit chain
"""

from shipwarden.domain.incidents.correlation import (
    DEFAULT_WEIGHTS,
    Candidate,
    Features,
    Ranking,
    Suspect,
    Weights,
    candidates_from_audit,
    features,
    rank,
    score,
)
from shipwarden.domain.incidents.impact import Affected, History, Times, affected_requests, times
from shipwarden.domain.incidents.lifecycle import (
    ACTION_ITEM_STATUSES,
    TRANSITIONS,
    ActionItem,
    AlertDecision,
    AlertFacts,
    Incident,
    IncidentError,
    Severity,
    Status,
    acknowledge,
    change_status,
    check_id,
    check_text,
    close_action_item,
    on_alert,
    severity_of,
)
from shipwarden.domain.incidents.report import FORMAT, ReportProblem, build_report, verify_report
from shipwarden.domain.incidents.timeline import TimelineEntry, assemble, classify, parse_ts

__all__ = [
    "ACTION_ITEM_STATUSES",
    "DEFAULT_WEIGHTS",
    "FORMAT",
    "TRANSITIONS",
    "ActionItem",
    "Affected",
    "AlertDecision",
    "AlertFacts",
    "Candidate",
    "Features",
    "History",
    "Incident",
    "IncidentError",
    "Ranking",
    "ReportProblem",
    "Severity",
    "Status",
    "Suspect",
    "TimelineEntry",
    "Times",
    "Weights",
    "acknowledge",
    "affected_requests",
    "assemble",
    "build_report",
    "candidates_from_audit",
    "change_status",
    "check_id",
    "check_text",
    "classify",
    "close_action_item",
    "features",
    "on_alert",
    "parse_ts",
    "rank",
    "score",
    "severity_of",
    "times",
    "verify_report",
]
