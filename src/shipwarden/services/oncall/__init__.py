"""On-call use cases (E8): the rota, the escalation engine, the watchdog.  Ports only."""

from shipwarden.services.oncall.engine import EscalationEngine, LinkSigner
from shipwarden.services.oncall.rota import OnCallError, Rota
from shipwarden.services.oncall.watchdog import Watchdog

__all__ = ["EscalationEngine", "LinkSigner", "OnCallError", "Rota", "Watchdog"]
