"""A local checkout that follows its remote: what a push event asks for (service/hooks.py).

`pull` fetches from the checkout's configured remote and moves the checkout to its branch's upstream (a
checkout kept for ingestion is a mirror: local edits are discarded, a force-push is followed), then names the
files that changed and were deleted between the old and the new commit (renames as a deletion and an addition),
from git itself rather than from the event's payload, which may list only some commits.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from index.errors import QuelleError


class GitError(QuelleError):
    pass


def _git(checkout: Path, *args: str, timeout: float = 300) -> str:
    try:
        out = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"{checkout}: git {args[0]} took longer than {timeout:g} s") from None
    if out.returncode != 0:
        raise GitError(f"{checkout}: git {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def head(checkout: Path) -> str:
    return _git(checkout, "rev-parse", "HEAD").strip()


def pull(checkout: Path) -> tuple[list[Path], list[Path], str, str]:
    """Fetch and move to the upstream; (changed or added files, deleted files, old commit, new commit)."""
    if not (checkout / ".git").exists():
        raise GitError(f"{checkout} is not a git checkout")
    old = head(checkout)
    upstream = _git(checkout, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}").strip()
    remote = upstream.split("/", 1)[0]
    _git(checkout, "fetch", "--quiet", remote)
    _git(checkout, "reset", "--quiet", "--hard", "@{upstream}")
    new = head(checkout)
    if new == old:
        return [], [], old, new
    changed: list[Path] = []
    deleted: list[Path] = []
    out = _git(checkout, "diff", "--name-status", "--no-renames", "-z", old, new)
    fields = out.split("\0")
    for status, name in zip(fields[0::2], fields[1::2], strict=False):
        if not status:
            continue
        path = (checkout / name).resolve()
        (deleted if status.startswith("D") else changed).append(path)
    return changed, deleted, old, new
