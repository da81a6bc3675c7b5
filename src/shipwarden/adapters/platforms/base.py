"""The platform port lives in ``shipwarden.ports.platform``; re-exported for the drivers."""

from shipwarden.ports.platform import Instance, InstanceState, Platform, PlatformError

__all__ = ["Instance", "InstanceState", "Platform", "PlatformError"]
