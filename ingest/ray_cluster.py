"""A Ray cluster for `quelle ingest --ray` (ingest/distributed.py): connected to, or started on this machine,
and always shut down; a local cluster's processes are recorded so that a run after a killed one ends those
still running (a killed driver leaves some: shared/RESOURCES.md), by their process ids."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from index.errors import ConfigError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_cluster(address: str | None, *, cpus: int | None = None, leftovers: Path | None = None,
                object_store_mb: int = 512) -> Iterator[dict[str, float]]:
    """Connect to the Ray cluster at `address`, or start a local one of `cpus` CPUs (default: this machine's);
    yields the cluster's resources. Ray is shut down on the way out, whatever happens; a local cluster's
    processes are recorded in `leftovers` so that a run after a killed one ends those still running (by their
    process ids)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("Ray ingestion needs Ray: pip install -e '.[ray]'") from None
    if leftovers is not None:
        end_leftovers(leftovers)
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    logging.getLogger("ray").setLevel(logging.WARNING)
    for name in ("ray.data", "ray.data._internal.progress"):  # notices about progress bars and execution plans
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=cpus or os.cpu_count() or 2, object_store_memory=object_store_mb << 20, **kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    stack = contextlib.ExitStack()
    try:
        # the driver prints the cluster's error notices (a worker died...) to stdout: keep it for the report
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        if leftovers is not None and not address:
            _record_processes(leftovers)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # `quelle ingest` shows its own
        ctx.print_on_execution_start = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
        yield {k: float(v) for k, v in ray.cluster_resources().items()}
    finally:
        ray.shutdown()
        stack.close()
        if leftovers is not None and not address:
            end_leftovers(leftovers, quiet=True)  # an agent or two can outlive ray.shutdown()


def _record_processes(path: Path) -> None:
    import psutil

    me = psutil.Process()
    procs = [{"pid": p.pid, "started": p.create_time()} for p in me.children(recursive=True)]
    path.write_text(json.dumps(procs))


def end_leftovers(path: Path, *, quiet: bool = False) -> int:
    """End the processes a local cluster recorded in `path` that still run (the same process: same start
    time), e.g. after its driver was killed; returns how many."""
    import psutil

    try:
        procs = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    ended = []
    for rec in procs:
        try:
            p = psutil.Process(rec["pid"])
            if abs(p.create_time() - rec["started"]) < 0.01:
                p.kill()
                ended.append(p)
        except (psutil.Error, KeyError, TypeError):
            continue
    psutil.wait_procs(ended, timeout=5)
    path.unlink(missing_ok=True)
    if ended and not quiet:
        log.warning("ended %d processes left by an earlier Ray run", len(ended))
    return len(ended)
