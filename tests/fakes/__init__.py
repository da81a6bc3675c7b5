"""In-memory stand-ins for the platform and router ports, with failure injection and a fake clock.

They implement the Protocols of ``adapters/platforms/base.py`` and ``adapters/routers/base.py``;
``tests/contract/`` runs the same behavioural checks against them and the real drivers
(LocalPlatform, NginxRouter), so they cannot drift from what the reconciler meets in production.
"""

from tests.fakes.clock import FakeClock
from tests.fakes.faults import Faults, InjectedFault
from tests.fakes.platform import Behaviour, FakePlatform
from tests.fakes.router import FakeRouter

__all__ = ["Behaviour", "FakeClock", "FakePlatform", "FakeRouter", "Faults", "InjectedFault"]
