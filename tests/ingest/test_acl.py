"""Access lists at ingestion: `--acl`, path rules from the settings, the default, and re-labelling."""

from __future__ import annotations

import pytest

from index.embedded import FaissSqliteStore
from ingest.acl import AclPolicy, parse_acl
from ingest.chunking import Chunker
from ingest.pipeline import Ingestor
from tests.cli.test_cli import quelle

MINILM = {"QUELLE_EMBEDDING_MODEL": "all-MiniLM-L6-v2"}


@pytest.fixture
def tree(tmp_path):
    for rel, text in {"hr/salaries.md": "# Salaries\n\nBands are reviewed every April.",
                      "hr/leave.md": "# Leave\n\nTwenty-five days of annual leave.",
                      "eng/build.md": "# Build\n\nThe build farm runs on Tuesdays.",
                      "all/welcome.md": "# Welcome\n\nThe canteen opens at noon."}.items():
        (tmp_path / "docs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / rel).write_text(text)
    return tmp_path / "docs"


def acls(data_dir) -> dict[str, tuple[str, ...]]:
    with FaissSqliteStore(data_dir, model_id=None, dim=None, writable=False) as store:
        docs, _ = store.documents(0, 100)
    return {d.source.split("/docs/")[1]: d.acl for d in docs}


def test_policy_order_override_then_first_rule_then_default():
    policy = AclPolicy.build(["group:staff"], [("*/hr/*", ["group:hr"]), ("*/hr/leave.md", ["public"])])
    assert policy.for_source("/srv/docs/hr/leave.md") == (("group:hr",), True)  # first match wins
    assert policy.for_source("/srv/docs/eng/build.md") == (("group:staff",), False)
    forced = AclPolicy.build(["public"], [("*/hr/*", ["group:hr"])], ["user:bob", "group:eng"])
    assert forced.for_source("/srv/docs/hr/leave.md") == (("group:eng", "user:bob"), True)
    with pytest.raises(ValueError, match="access rule '\\*/x/\\*': access list entry 'hr'"):
        AclPolicy.build(["public"], [("*/x/*", ["hr"])])
    with pytest.raises(ValueError, match="at least one entry"):
        parse_acl(" , ")


def test_rules_label_new_files_relabel_unchanged_ones_and_the_default_never_undoes(tree, tmp_path, embedder):
    data_dir = tmp_path / "index"

    def run(policy: AclPolicy):
        with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
            return Ingestor(store, embedder, Chunker(embedder.tokenizer), acl=policy).run([tree])

    first = run(AclPolicy.build(["group:staff"], [("*/hr/*", ["group:hr"])]))
    assert first.added == 4
    assert acls(data_dir) == {"hr/salaries.md": ("group:hr",), "hr/leave.md": ("group:hr",),
                              "eng/build.md": ("group:staff",), "all/welcome.md": ("group:staff",)}
    # a new rule re-labels unchanged files without embedding anything again
    second = run(AclPolicy.build(["group:staff"], [("*/hr/salaries.md", ["group:hr-leads"]),
                                                   ("*/hr/*", ["group:hr"]), ("*/all/*", ["public"])]))
    assert (second.unchanged, second.relabelled, second.chunks_embedded) == (4, 2, 0)
    assert acls(data_dir)["hr/salaries.md"] == ("group:hr-leads",) and acls(data_dir)["all/welcome.md"] == ("public",)
    # a list set by an administrator (API) is kept by a run that only has the default for that file
    with FaissSqliteStore(data_dir, model_id=embedder.model_id, dim=embedder.dim, writable=True) as store:
        eng = store.document_by_source((tree / "eng/build.md").resolve().as_posix())
        assert store.set_acl(eng.id, ("group:eng",))
        store.commit()
    (tree / "eng/build.md").write_text("# Build\n\nThe build farm runs on Tuesdays and Fridays.")
    third = run(AclPolicy.build(["public"]))
    assert third.updated == 1 and third.relabelled == 0
    assert acls(data_dir)["eng/build.md"] == ("group:eng",)  # changed content, same access list


def test_cli_acl_flag_settings_rules_and_clear_errors(tree, tmp_path):
    data_dir = str(tmp_path / "ix")
    env = {**MINILM, "QUELLE_ACL_RULES": '[{"path": "*/hr/*", "acl": ["group:hr"]}]',
           "QUELLE_DEFAULT_ACL": '["group:staff"]'}
    run = quelle("ingest", str(tree), "--data-dir", data_dir, "--quiet", env_extra=env)
    assert run.returncode == 0, run.stderr
    assert acls(tmp_path / "ix")["hr/leave.md"] == ("group:hr",)
    assert acls(tmp_path / "ix")["eng/build.md"] == ("group:staff",)
    run = quelle("ingest", str(tree / "eng"), "--data-dir", data_dir, "--acl", "group:eng,user:alice", "--quiet",
                 env_extra=env)
    assert run.returncode == 0 and "1 unchanged given a new access list" in run.stdout, run.stdout + run.stderr
    assert acls(tmp_path / "ix")["eng/build.md"] == ("group:eng", "user:alice")

    bad = quelle("ingest", str(tree), "--data-dir", data_dir, "--acl", "group:h r", env_extra=MINILM)
    assert bad.returncode == 2 and "--acl 'group:h r'" in bad.stderr and "access list entry" in bad.stderr
    bad = quelle("stats", "--data-dir", data_dir,
                 env_extra={"QUELLE_ACL_RULES": '[{"path": "*/hr/*", "acl": ["hr"]}]'})
    assert bad.returncode == 2 and "QUELLE_ACL_RULES[0][acl]" in bad.stderr and "'hr'" in bad.stderr
    bad = quelle("stats", "--data-dir", data_dir, env_extra={"QUELLE_DEFAULT_ACL": "public"})
    assert bad.returncode == 2 and "default_acl" in bad.stderr and "JSON" in bad.stderr
