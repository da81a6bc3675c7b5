"""The HTTP API (FastAPI): thin routes over the services; authentication and authorisation in ``deps``."""

from shipwarden.entrypoints.http.app import ROUTERS, create_app

__all__ = ["ROUTERS", "create_app"]
