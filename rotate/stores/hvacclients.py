"""The control plane's hvac clients: one per thread, all sending the run's one token."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

import hvac
import requests
from requests import Response
from requests.adapters import HTTPAdapter

from rotate.errors import StoreError
from rotate.settings import VaultSettings

#: builds the hvac client of one thread; the default follows the VaultSettings
ClientFactory = Callable[[], hvac.Client]


class HvacClients:
    """One hvac client (and requests Session) per thread, counted, and closed together.

    A Session is not thread-safe, and a shared client behind a lock would serialise the whole
    run on Vault. Once closed, asking for a client fails with StoreError.
    """

    def __init__(
        self,
        settings: VaultSettings,
        token: Callable[[], str],
        factory: ClientFactory | None = None,
    ) -> None:
        self._settings = settings
        self._token = token
        self._factory = factory or self.from_settings
        self._local = threading.local()
        self._clients: list[hvac.Client] = []
        self._lock = threading.Lock()
        self._closed = False
        self.requests = 0  # round trips of the clients `from_settings` built

    def get(self) -> hvac.Client:
        """This thread's client, built on first use."""
        if self._closed:
            raise StoreError("the Vault store is closed")
        client: hvac.Client | None = getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                if self._closed:
                    raise StoreError("the Vault store is closed")
                client = self._factory()
                self._clients.append(client)
            self._local.client = client
        return client

    def fresh(self) -> hvac.Client:
        """A client of the caller's own, from the factory (the token keeper's renewer and
        its final revocation use one); the caller closes it."""
        return self._factory()

    def from_settings(self) -> hvac.Client:
        """A client as the settings say (the default factory), its round trips counted."""
        s = self._settings
        session = requests.Session()
        # A thread sends one request at a time: a tiny pool, and no retries hidden in
        # urllib3 (the pipeline decides what to retry).
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = s.cacert or True
        session.hooks["response"].append(self._count)
        return hvac.Client(
            url=s.addr,
            # "" rather than None: hvac would otherwise go looking for a token on its own.
            token=self._token(),
            verify=s.cacert or True,
            timeout=cast(int, s.timeout_s),  # requests takes a float; the stub says int
            session=session,
            namespace=s.namespace or None,
        )

    def set_token(self, token: str) -> None:
        """Hand a new token (a login) to every thread's client; later clients start with it."""
        with self._lock:
            for client in self._clients:
                client.token = token

    def close(self) -> None:
        """Close every thread's session; later calls of `get` fail."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.adapter.close()

    def _count(self, response: Response, *args: object, **kwargs: object) -> None:
        """A response hook: how many round trips a run made (for the run record's stats)."""
        with self._lock:
            self.requests += 1
