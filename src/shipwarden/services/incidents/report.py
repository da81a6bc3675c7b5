"""The post-incident report use case: assemble the document, hand it to the writer.

``shipwarden incident report ID`` and ``GET /incidents/{id}/report`` come here.  The document
(:func:`~shipwarden.domain.incidents.build_report`) is made of what the audit log, the metric
history and the incident's own record say at the moment it is written; the writer
(``ports.incidents.ReportWriter``, an adapter) lays it out as ``report.json``, ``report.html``
with the plots embedded, and ``report.pdf``.  Writing the report is itself audited
(``incident.report``, with the audit head the report covers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipwarden.domain.incidents import affected_requests, build_report, times
from shipwarden.ports.incidents import ReportFiles, ReportWriter
from shipwarden.services.incidents.service import IncidentService

__all__ = ["IncidentReports"]


class IncidentReports:
    def __init__(self, incidents: IncidentService, writer: ReportWriter | None = None) -> None:
        self.incidents, self.writer = incidents, writer

    def document(self, incident_id: str) -> dict[str, Any]:
        svc = self.incidents
        inc = svc.get(incident_id)
        now = svc.clock()
        ranking = svc.suspects(inc)
        timeline = svc.timeline(inc, ranking)
        history = svc.history(inc)
        affected = affected_requests(history, inc.onset_at, inc.restored_at, now)
        links = {
            s.candidate.ref: f"/deployments/{s.candidate.deployment_id}"
            for s in ranking.suspects
            if s.candidate.deployment_id
        }
        return build_report(
            incident=inc, times=times(inc, now), affected=affected, timeline=timeline, ranking=ranking,
            history=history, items=svc.items(inc.id), now=now, audit_head=svc.head(), links=links,
        )  # fmt: skip

    def html(self, incident_id: str) -> str:
        if self.writer is None:
            raise RuntimeError("no report writer configured")
        return self.writer.html(self.document(incident_id))

    def write(self, incident_id: str, directory: Path, *, pdf: bool = True, actor: str) -> ReportFiles:
        if self.writer is None:
            raise RuntimeError("no report writer configured")
        doc = self.document(incident_id)
        files = self.writer.write(doc, directory, pdf=pdf)
        self.incidents.store.record(
            doc["incident"]["id"], actor=actor, action="incident.report",
            detail={"directory": str(directory)[:300], "pdf": files.pdf is not None,
                    "audit_head": doc["audit_head"], "timeline": len(doc["timeline"]),
                    "verdict": doc["correlation"]["verdict"][:200]},
        )  # fmt: skip
        return files
