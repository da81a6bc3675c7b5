"""What metric providers that reach their back-end over HTTP (httpx) share.

Client ownership -- a provider that created its client closes it, an injected
one belongs to the caller and is left open -- and the mapping of transport
failures to :class:`ProviderError`: no answer in time is ``TIMEOUT``, nothing
reachable is ``CONNECTION``.  HTTP statuses and bodies are each back-end's
own contract and stay in its module.
"""

from __future__ import annotations

from typing import Any

import httpx

from shipwarden.adapters.metrics.base import ErrorKind, ProviderError, TemplateProvider

__all__ = ["HttpProvider"]


class HttpProvider(TemplateProvider):
    """A :class:`TemplateProvider` that talks to its back-end through an httpx client.

    ``client`` is injectable so callers can share connection pools or add
    transports; when it is ``None`` the provider creates one and
    :meth:`close` closes it.  ``timeout_s`` must be positive; how it bounds a
    request is the subclass's choice (it passes ``timeout`` to :meth:`_send`).
    """

    def __init__(self, *, client: httpx.Client | None, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client()

    def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            self._client.close()

    def _send(
        self, method: str, url: str, *, query: str, timeout: float, where: str | None = None, **request: Any
    ) -> httpx.Response:
        """Send one request and return whatever HTTP answer came; transport failures raise.

        ``where`` names the server in error messages (default ``url``);
        ``request`` goes on to :meth:`httpx.Client.request` (``params``,
        ``data``, ``content``, ``headers``, ``auth``).
        """
        where = url if where is None else where
        try:
            return self._client.request(method, url, timeout=timeout, **request)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"no answer from {where} within {timeout}s ({type(exc).__name__})",
                kind=ErrorKind.TIMEOUT,
                provider=self.kind,
                query=query,
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                f"cannot reach {where}: {exc}", kind=ErrorKind.CONNECTION, provider=self.kind, query=query
            ) from None
