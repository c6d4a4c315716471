"""The routes the web page stands on (its files, how to sign in, who the caller is, the last ingestion report);
the page itself runs in a real browser in tests/web."""

from __future__ import annotations

import json
import re

from ingest.report import FileFailure, IngestReport
from service.config import Settings
from tests.service.test_permissions import make_world


def test_a_browser_gets_the_page_and_a_program_the_links(client):
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self';" in csp and "frame-ancestors 'none'" in csp
    # nothing inline for the policy to allow: no script blocks, style attributes or event handler attributes
    assert "<script>" not in page.text and " style=" not in page.text and not re.search(r"\son[a-z]+=", page.text)
    assets = re.findall(r"""(?:src|href)="([^"]+)\"""", page.text)
    assert set(assets) == {"/ui/app.css", "/ui/app.js", "data:,", "#question"}  # nothing from elsewhere
    for asset in ("/ui/app.css", "/ui/app.js"):
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 1000
        assert not re.search(r"https?://", got.text), asset  # works offline: no CDN, no font service
    assert client.get("/ui/index.html").status_code == 404
    assert client.get("/ui/..%2Fapp.py").status_code == 404
    assert client.get("/").json()["links"]["chat"] == "POST /v1/chat/completions"


def test_client_config_says_how_to_sign_in(make_client, client):
    assert client.get("/client-config").json() == {"auth": "off", "sso": None, "agent": False}
    keyed = make_client(auth="keys")
    assert keyed.get("/client-config").json()["auth"] == "keys"  # no key needed to ask how to sign in
    # a client id without a token verifier offers no SSO (the page could never use the token)
    half = make_client(auth="keys", oidc_client_id="web", oidc_authorization_url="https://idp/auth",
                       oidc_token_url="https://idp:8443/token")
    assert half.get("/client-config").json()["sso"] is None
    # the page may reach the provider's token endpoint, and nothing else beyond the service
    csp = half.get("/", headers={"Accept": "text/html"}).headers["content-security-policy"]
    assert "connect-src 'self' https://idp:8443;" in csp


def test_me_names_the_caller_and_whether_they_administer(make_client, data_dir):
    client, auth, _, _ = make_world(make_client, data_dir)
    assert client.get("/v1/me").status_code == 401
    assert client.get("/v1/me", headers=auth["alice"]).json() == {
        "name": "alice", "groups": ["hr"], "admin": False, "realm": "key"}
    assert client.get("/v1/me", headers=auth["root"]).json()["admin"] is True


def test_the_last_ingestion_report_is_for_administrators(make_client, data_dir):
    client, auth, _, _ = make_world(make_client, data_dir)
    r = client.get("/v1/ingest/report", headers=auth["root"])
    assert r.status_code == 404 and "quelle ingest" in r.json()["detail"]
    report = IngestReport(added=2, failed=1, failures=[FileFailure("/docs/bad.pdf", "not a PDF")], generation=7)
    path = Settings(_env_file=None, data_dir=data_dir).last_ingest_report()
    report.save(path, paths=["/docs"], finished="2026-11-30T12:00:00+00:00")
    got = client.get("/v1/ingest/report", headers=auth["root"]).json()
    assert got["added"] == 2 and got["failures"] == [{"path": "/docs/bad.pdf", "reason": "not a PDF"}]
    assert got["paths"] == ["/docs"] and got["summary"].startswith("files: 2 added") and got["generation"] == 7
    assert client.get("/v1/ingest/report", headers=auth["alice"]).status_code == 403
    assert json.loads(path.read_text())["finished"] == "2026-11-30T12:00:00+00:00"
    assert not list(data_dir.glob(".last-ingest-*"))  # written whole: no temporary file left
