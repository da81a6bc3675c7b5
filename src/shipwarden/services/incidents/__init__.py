"""Incident use cases (D12): ports only — never ``shipwarden.adapters`` (``.importlinter``)."""

from shipwarden.services.incidents.report import IncidentReports
from shipwarden.services.incidents.service import IncidentService, RollbackStarted, related_from

__all__ = ["IncidentReports", "IncidentService", "RollbackStarted", "related_from"]
