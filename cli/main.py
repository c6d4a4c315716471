"""The `quelle` command: ingest, serve, ask, search, stats, eval, keys.

Errors become one line on stderr: exit 1 for a failure, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import SettingsError

from index.errors import IndexLockedError, QuelleError
from index.store import StoreConfig
from ingest.acl import parse_acl
from service.config import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quelle", description="Question answering over your own documents.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_data_dir(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--data-dir", type=Path, help="index folder (default ./quelle-data or QUELLE_DATA_DIR)")
        return sp

    ing = with_data_dir(sub.add_parser("ingest", help="add, update (and with --sync remove) documents"))
    ing.add_argument("paths", nargs="+", type=Path, help="files or folders (searched recursively)")
    ing.add_argument("--sync", action="store_true", help="remove documents under PATHs whose files are gone")
    ing.add_argument("--json", action="store_true", help="print the report as JSON")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    ing.add_argument("--commit-interval", type=float, help="seconds between intermediate commits")
    ing.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="parse and embed on a Ray cluster (pip install -e '.[ray]'): a local one on this machine, "
                          "or the cluster at ADDRESS (e.g. auto, or host:6379; the files must be at the same path "
                          "on every node)")
    ing.add_argument("--acl", help="access list for these files, e.g. group:hr,user:bob or public (default: the "
                                   "first matching QUELLE_ACL_RULES entry, else QUELLE_DEFAULT_ACL for new files)")

    wa = with_data_dir(sub.add_parser("watch", help="follow folders: ingest new and changed files as they settle, "
                                                   "remove deleted ones (after catching up)"))
    wa.add_argument("paths", nargs="+", type=Path, help="folders to follow (recursively)")
    wa.add_argument("--acl", help="access list for these files (as for ingest)")
    wa.add_argument("--polling", action="store_true", help="poll instead of inotify (network file systems)")
    wa.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (events, lag, failures)")

    with_data_dir(sub.add_parser("stats", help="what the index holds")).add_argument("--json", action="store_true")

    sv = with_data_dir(sub.add_parser("serve", help="run the HTTP API (uvicorn)"))
    sv.add_argument("--host", help="address to listen on (default 127.0.0.1 or QUELLE_HOST)")
    sv.add_argument("--port", type=int, help="port (default 8000 or QUELLE_PORT)")
    sv.add_argument("--no-auth", action="store_true",
                    help="no API keys: anyone who can reach the service reads every document (local trials)")
    sv.add_argument("--watch", nargs="+", type=Path, metavar="PATH",
                    help="also follow these folders, as `quelle watch` does, in this process (or QUELLE_WATCH)")
    sv.add_argument("--polling", action="store_true", help="--watch: poll instead of inotify")

    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = with_data_dir(ksub.add_parser("create", help="a new key, printed once"))
    kc.add_argument("--name", required=True, help="who the key is for")
    kc.add_argument("--groups", default="", help="comma-separated groups whose documents the key may read")
    kc.add_argument("--json", action="store_true")
    with_data_dir(ksub.add_parser("list", help="keys, never their secrets")).add_argument("--json", action="store_true")
    with_data_dir(ksub.add_parser("revoke", help="revoke a key by id, or every key of a name")).add_argument("key")

    ak = with_data_dir(sub.add_parser("ask", help="answer a question with its sources"))
    ak.add_argument("question")
    ak.add_argument("-k", type=int, help="how many chunks to retrieve")
    ak.add_argument("--json", action="store_true")
    ak.add_argument("--agent", action="store_true", help="plan and use tools (search, read, calculate...) before "
                                                         "answering; needs a language model (QUELLE_LLM_MODEL)")

    ev = with_data_dir(sub.add_parser("eval", help="retrieval quality: a BEIR folder or a golden JSONL file"))
    ev.add_argument("dataset", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) or .jsonl")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--answers", action="store_true",
                    help="answer-level metrics: on a golden file beside retrieval, or on an answer set (a folder "
                         "with docs/ and questions.jsonl, see bench/answer_sets.py), per answerer")
    ev.add_argument("--answerer", action="append", choices=["sentence", "passage", "llm", "agent"],
                    help="answer set: which answerers to measure (default: sentence, passage, and llm when one is "
                         "configured; agent: agent mode, with a language model)")
    ev.add_argument("--mode", choices=["single", "agent"],
                    help="answer set: 'agent' measures agent mode beside the single-shot model answer (the same as "
                         "--answerer llm --answerer agent)")
    ev.add_argument("--questions", default="questions.jsonl", metavar="FILE",
                    help="answer set: the question file in the set's folder (default questions.jsonl; agent mode's "
                         "compound questions: compound.jsonl)")

    se = with_data_dir(sub.add_parser("search", help="the chunks closest to a query"))
    se.add_argument("query")
    se.add_argument("-k", type=int, default=5, help="how many chunks (default 5)")
    se.add_argument("--json", action="store_true")
    return p


NO_INDEX = 3  # exit code: a read-only command found no index, or one without documents
BUSY = 5  # exit code: another process is writing the index (it names the process); retry later


def _reads_an_index(args: argparse.Namespace) -> bool:
    """Commands that only read the index in --data-dir (a golden file is asked against it; a BEIR folder and
    an answer set bring their own documents, which eval indexes)."""
    if args.command in ("ask", "search", "stats"):
        return True
    return args.command == "eval" and args.dataset.is_file()


def _index_exists(where: StoreConfig) -> bool:
    from index.store import backend

    return backend(where).recorded_model(where) is not None


def _index_documents(where: StoreConfig) -> int:
    from index.store import backend

    return backend(where).recorded_documents(where) or 0


def _acl(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, ...] | None:
    """--acl, checked (a usage error naming the bad entry)."""
    if args.acl is None:
        return None
    try:
        return parse_acl(args.acl)
    except ValueError as exc:
        parser.error(f"--acl {args.acl!r}: {exc}")
        raise  # parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {"data_dir": args.data_dir} if args.data_dir else {}
    for name in ("host", "port"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            name = "QUELLE_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
            where = "".join(f"[{x}]" for x in err["loc"][1:])
            print(f"quelle: error: invalid setting {name}{where}: {err['msg']}", file=sys.stderr)
        return 2
    except SettingsError as exc:  # a list or object setting that is not JSON
        print(f"quelle: error: {exc}: lists and objects are JSON, e.g. QUELLE_DEFAULT_ACL='[\"group:staff\"]'",
              file=sys.stderr)
        return 2
    if args.command != "serve":
        logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    if args.command == "ask" and args.k is not None and not 1 <= args.k <= 50:
        parser.error(f"-k must be between 1 and 50, got {args.k}")
    if args.command == "search" and not 1 <= args.k <= 100:
        parser.error(f"-k must be between 1 and 100, got {args.k}")
    if _reads_an_index(args) and not _index_exists(settings.store()):
        # a read-only command never creates an index (nor the model export beside it)
        where = settings.store().where
        print(f"quelle: error: no index in {where}: build one with `quelle ingest FOLDER` (the index "
              "folder is --data-dir or QUELLE_DATA_DIR, default ./quelle-data)", file=sys.stderr)
        return NO_INDEX
    if _reads_an_index(args) and args.command != "stats" and not _index_documents(settings.store()):
        print(f"quelle: error: the index in {settings.store().where} holds no documents yet: add some with "
              "`quelle ingest FOLDER`", file=sys.stderr)
        return NO_INDEX
    from cli import commands

    try:
        if args.command == "ingest":
            missing = [str(p) for p in args.paths if not p.exists()]
            if missing:
                parser.error(f"no such file or folder: {', '.join(missing)}")
            return commands.ingest(settings, args.paths, sync=args.sync, as_json=args.json, quiet=args.quiet,
                                   commit_interval=args.commit_interval, acl=_acl(parser, args), ray=args.ray)
        if args.command == "watch":
            not_folders = [str(p) for p in args.paths if not p.is_dir()]
            if not_folders:
                parser.error(f"not a folder: {', '.join(not_folders)}")
            return commands.watch(settings, args.paths, acl=_acl(parser, args),
                                  polling=args.polling or settings.watch_polling, metrics_port=args.metrics_port)
        if args.command == "stats":
            stats = commands.stats(settings)
            print(json.dumps(asdict(stats)) if args.json else "\n".join(f"{k}: {v}" for k, v in asdict(stats).items()))
            return 0
        if args.command == "serve":
            if args.no_auth:
                settings = settings.model_copy(update={"auth": "off"})
            if args.watch:
                not_folders = [str(p) for p in args.watch if not p.is_dir()]
                if not_folders:
                    parser.error(f"--watch: not a folder: {', '.join(not_folders)}")
                settings = settings.model_copy(update={"watch": args.watch})
            if args.polling:
                settings = settings.model_copy(update={"watch_polling": True})
            return commands.serve(settings)
        if args.command == "keys":
            return commands.keys(settings, args)
        if args.command == "ask":
            return commands.ask(settings, args.question, args.k, as_json=args.json, agent=args.agent)
        if args.command == "eval":
            if not args.dataset.exists():
                parser.error(f"no such dataset: {args.dataset}")
            from cli import answer_eval

            if answer_eval.is_answer_set(args.dataset):
                if not args.answers:
                    parser.error(f"{args.dataset} is an answer set: add --answers")
                answerers = args.answerer
                if args.mode == "agent":
                    answerers = [*dict.fromkeys([*(answerers or []), "llm", "agent"])]
                report = answer_eval.run(settings, args.dataset, answerers, args.questions)
                print(json.dumps(report, indent=2) if args.json else answer_eval.format_report(report))
                return 0
            return commands.evaluate(settings, args.dataset, as_json=args.json, answers=args.answers)
        if args.command == "search":
            return commands.search(settings, args.query, args.k, as_json=args.json)
    except IndexLockedError as exc:
        print(f"quelle: error: {exc}", file=sys.stderr)
        return BUSY
    except QuelleError as exc:
        print(f"quelle: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("quelle: interrupted; the index keeps its last commit", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`quelle stats | head`): stop quietly, as other commands do; stdout points at
        # /dev/null so that the interpreter's final flush raises nothing either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
