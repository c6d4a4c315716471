"""The web page in a real browser: Debian's headless Chromium, driven through chromedriver by Selenium, against
`quelle serve` running as a subprocess on 127.0.0.1 (keys and an OpenID Connect provider on, the handbook PDF
readable by the hr group only). Screenshots of each run are saved in the test's tmp folder.

Without /usr/bin/chromium and /usr/bin/chromedriver these tests are skipped, unless QUELLE_REQUIRE_BROWSER is
set (.ci/run installs both and sets it, so CI never skips them)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.auth import KeyStore
from tests.conftest import DATA, ROOT
from tests.llm_server import Reply, ScriptedLLM
from tests.service.test_e2e import free_port, serve
from tests.service.test_previews import _marked
from tests.web.idp import Provider

pytestmark = pytest.mark.integration

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and DRIVER.exists()):
    if os.environ.get("QUELLE_REQUIRE_BROWSER"):
        raise RuntimeError("QUELLE_REQUIRE_BROWSER is set but /usr/bin/chromium or /usr/bin/chromedriver is "
                           "missing: apt-get install chromium chromium-driver")
    pytest.skip("no Chromium here (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

LEAVE = "How many days of paid annual leave do I get?"
CAFETERIA = "# Cafeteria\n\nThe staff cafeteria on floor 3 serves lunch from 11:30 to 14:00 on working days.\n"
LAB = "# Robot lab\n\nThe robot lab in building C is open to the eng group from 7:00 to 22:00.\n"


class Site:
    def __init__(self, base: str, keys: dict[str, str], handbook: dict, idp: Provider, data_dir: Path) -> None:
        self.base, self.keys, self.handbook, self.idp, self.data_dir = base, keys, handbook, idp, data_dir


@pytest.fixture(scope="module")
def site(built_index, tmp_path_factory) -> Iterator[Site]:
    """`quelle ingest` then `quelle serve` on a copy of the test index, with API keys for root (admin), alice
    (hr) and bob (eng), and an identity provider for single sign-on."""
    tmp = tmp_path_factory.mktemp("web")
    data_dir = tmp / "index"
    shutil.copytree(built_index, data_dir)
    extra = tmp / "extra"
    extra.mkdir()
    (extra / "cafeteria.md").write_text(CAFETERIA)
    shutil.copy(DATA / "corrupt.pdf", extra / "corrupt.pdf")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "ingest", str(extra), "--data-dir", str(data_dir)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stderr  # one file failed: named in the report the page shows
    keys = KeyStore(data_dir / "keys.sqlite")
    tokens = {name: keys.create(name, groups)[0] for name, groups in
              [("root", ("admin",)), ("alice", ("hr",)), ("bob", ("eng",))]}
    keys.close()
    idp = Provider()
    port = free_port()
    try:
        with serve(data_dir, port, tmp, QUELLE_RATE_LIMIT="0", **idp.settings()):
            base = f"http://127.0.0.1:{port}"
            root = {"Authorization": f"Bearer {tokens['root']}"}
            docs = httpx.get(f"{base}/v1/documents", params={"limit": 500}, headers=root).json()["documents"]
            handbook = next(d for d in docs if d["source"].endswith("handbook/employee-handbook.pdf"))
            r = httpx.put(f"{base}/v1/documents/{handbook['id']}/acl", json={"acl": ["group:hr"]}, headers=root)
            assert r.status_code == 200
            yield Site(base, tokens, handbook, idp, data_dir)
    finally:
        idp.close()


def chrome(user_data: Path, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # no background networking: this machine's closed network refuses Chromium's own connections
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={user_data}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(str(DRIVER)))


@pytest.fixture
def browser(tmp_path) -> Iterator[webdriver.Chrome]:
    driver = chrome(tmp_path / "chrome")
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, timeout: float = 30, what: str = ""):  # type: ignore[no-untyped-def]
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        shot = Path(os.environ.get("TMPDIR", "/tmp")) / f"quelle-web-timeout-{int(time.time())}.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"timed out waiting for {what or condition} (screenshot {shot}); browser log: "
                             f"{driver.get_log('browser')}") from None


def shown(driver, element_id: str) -> bool:
    found = driver.find_elements(By.ID, element_id)
    return bool(found) and found[0].is_displayed()


def sign_in(driver, site: Site, key: str) -> None:
    driver.get(site.base + "/")
    wait(driver, lambda d: shown(d, "api-key"), what="the sign-in form")
    driver.find_element(By.ID, "api-key").send_keys(key + Keys.ENTER)
    wait(driver, lambda d: shown(d, "question"), what="the question box after signing in")


WATCH = """
window.__cls = 0; window.__lengths = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
}).observe({type: 'layout-shift', buffered: true});
new MutationObserver(() => {
  const busy = document.querySelector('.turn[aria-busy] .a');
  if (busy) window.__lengths.push(busy.textContent.length);
}).observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true});
"""


def ask(driver, question: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    before = len(driver.find_elements(By.CSS_SELECTOR, "#log > .turn"))
    box = driver.find_element(By.ID, "question")
    box.send_keys(question + Keys.ENTER)
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log > .turn:not([aria-busy])")) > before,
         timeout, what=f"the answer to {question!r}")
    return driver.find_elements(By.CSS_SELECTOR, "#log > .turn")[-1]


def source_titles(driver) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#sources .title")]


def test_ask_watch_it_stream_and_check_the_citation_on_the_page_itself(site, browser, tmp_path):
    sign_in(browser, site, site.keys["alice"])
    browser.execute_script(WATCH)
    turn = ask(browser, LEAVE)
    browser.save_screenshot(str(tmp_path / "answer.png"))
    answer = turn.find_element(By.CSS_SELECTOR, ".a").text
    assert "25 days of paid annual leave" in answer
    lengths = browser.execute_script("return window.__lengths")
    assert len(set(lengths)) >= 2 and min(lengths) < len(answer), lengths  # it arrived in pieces, not at once
    assert browser.execute_script("return window.__cls") < 0.01  # nothing jumped while it streamed
    assert "Kestrel Labs Employee Handbook" in source_titles(browser)
    assert "25 days of paid annual leave" in browser.find_element(By.ID, "sources").text  # the quoted span

    link = turn.find_element(By.CSS_SELECTOR, "a.cite")
    assert link.get_attribute("aria-label").startswith("source 1: Kestrel Labs Employee Handbook, page 2")
    link.click()
    wait(browser, lambda d: d.execute_script(
        "const i = document.getElementById('preview-image'); return i && i.complete && i.naturalWidth > 0"),
        what="the page image")
    assert browser.find_element(By.ID, "preview-title").text == "Kestrel Labs Employee Handbook, page 2"
    assert browser.find_element(By.ID, "preview-note").text == "The quoted passage is highlighted on the page."
    # the very image the page shows (its blob), not a screenshot of the part of it in view
    png = base64.b64decode(browser.execute_script("""
        const i = document.getElementById('preview-image'), c = document.createElement('canvas');
        c.width = i.naturalWidth; c.height = i.naturalHeight; c.getContext('2d').drawImage(i, 0, 0);
        return c.toDataURL('image/png').split(',')[1];"""))
    (tmp_path / "page-preview.png").write_bytes(png)
    browser.save_screenshot(str(tmp_path / "preview-dialog.png"))
    spots = _marked(png)
    height = Image.open(io.BytesIO(png)).height
    assert len(spots) > 300 and max(y for _, y in spots) < 0.35 * height  # marked, near the top where it stands
    # the dialog closes with Escape and gives the focus back to the link that opened it
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(browser, lambda d: not d.find_element(By.ID, "preview").get_attribute("open"), what="the dialog to close")
    assert browser.switch_to.active_element == link

    # a follow-up in the same conversation; a reload keeps the conversation; "New conversation" clears it
    ask(browser, "And how much of it can I carry over?")
    session = browser.execute_script("return sessionStorage.getItem('quelle.session')")
    assert session and len(browser.find_elements(By.CSS_SELECTOR, "#log > .turn")) == 2
    browser.refresh()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log > .turn")) == 2, what="the kept turns")
    assert "25 days" in browser.find_element(By.CSS_SELECTOR, "#log > .turn .a").text
    browser.find_element(By.ID, "new-conversation").click()
    assert not browser.find_elements(By.CSS_SELECTOR, "#log > .turn")
    assert browser.execute_script("return sessionStorage.getItem('quelle.session')") is None


def test_a_html_citation_opens_its_section_with_the_quote_marked(site, browser, tmp_path):
    sign_in(browser, site, site.keys["alice"])
    turn = ask(browser, "What is the per diem outside Europe?")
    assert "80 EUR" in turn.text
    turn.find_element(By.CSS_SELECTOR, "a.cite").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#preview-body mark"), what="the marked section")
    marked = browser.find_element(By.CSS_SELECTOR, "#preview-body mark").text
    assert "80 EUR per day elsewhere" in marked
    assert browser.find_element(By.ID, "preview-title").text == "Travel and Expenses Policy"
    browser.save_screenshot(str(tmp_path / "section.png"))


def test_japanese_and_chinese_answers_render_in_their_own_script(site, browser, tmp_path):
    sign_in(browser, site, site.keys["alice"])
    ja = ask(browser, "東京オフィスでは週に何日在宅勤務できますか？")
    zh = ask(browser, "上海办公室每月可以远程办公几天？")
    browser.save_screenshot(str(tmp_path / "ja-zh.png"))
    assert "三日" in ja.find_element(By.CSS_SELECTOR, ".a").text
    assert ja.find_element(By.CSS_SELECTOR, ".a").get_attribute("lang") == "ja"
    assert "八天" in zh.find_element(By.CSS_SELECTOR, ".a").text
    assert zh.find_element(By.CSS_SELECTOR, ".a").get_attribute("lang") == "zh"
    # drawn with a CJK font: each ideograph as wide as the line is high, no narrow fallback boxes
    width = browser.execute_script("""
        const r = document.createRange(); const t = arguments[0].firstChild;
        r.setStart(t, 0); r.setEnd(t, 1); return r.getBoundingClientRect().width;""",
                                   ja.find_element(By.CSS_SELECTOR, ".q"))
    assert width > 10


def test_the_page_breaks_no_rule_of_its_own_content_security_policy(site, browser):
    sign_in(browser, site, site.keys["alice"])
    turn = ask(browser, LEAVE)
    turn.find_element(By.CSS_SELECTOR, "a.cite").click()
    wait(browser, lambda d: d.find_elements(By.ID, "preview-image"), what="the page image")
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []


def test_a_wrong_key_is_refused_in_the_services_words(site, browser, tmp_path):
    browser.get(site.base + "/")
    wait(browser, lambda d: shown(d, "api-key"))
    browser.find_element(By.ID, "api-key").send_keys("qk_000000000000_not-a-real-key" + Keys.ENTER)
    wait(browser, lambda d: d.find_element(By.ID, "sign-in-error").text, what="the error")
    error = browser.find_element(By.ID, "sign-in-error").text
    browser.save_screenshot(str(tmp_path / "sign-in-failed.png"))
    assert error.startswith("unauthorized: ") and "key" in error
    assert not shown(browser, "question")
    assert browser.execute_script("return sessionStorage.getItem('quelle.token')") is None


def test_a_restricted_user_never_sees_documents_they_cannot_read(site, browser, tmp_path):
    sign_in(browser, site, site.keys["bob"])
    assert not shown(browser, "show-admin")  # not an administrator
    turn = ask(browser, LEAVE)
    browser.save_screenshot(str(tmp_path / "restricted.png"))
    assert "Kestrel Labs Employee Handbook" not in source_titles(browser)
    assert "Kestrel Labs Employee Handbook" not in browser.page_source
    assert "25 days" not in turn.text
    # nor through a citation link made for someone else (a chat client's annotation URL)
    chunk = httpx.post(f"{site.base}/v1/search", json={"query": LEAVE, "top_k": 1},
                       headers={"Authorization": f"Bearer {site.keys['alice']}"}).json()["results"][0]["chunk_id"]
    browser.get(f"{site.base}/?doc={site.handbook['id']}&chunk={chunk}&page=2&quote=25%20days")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#preview-body .error"), what="the refusal")
    assert f"no document with id '{site.handbook['id']}'" in browser.find_element(By.ID, "preview-body").text
    assert not browser.find_elements(By.ID, "preview-image")


def test_a_question_the_documents_cannot_answer_is_shown_as_such(site, browser):
    sign_in(browser, site, site.keys["alice"])
    turn = ask(browser, "Who won the football world cup in 1954?")
    assert "abstained" in turn.get_attribute("class")
    assert turn.find_element(By.CSS_SELECTOR, ".badge").text == "Not in the documents"
    assert not source_titles(browser)


def test_single_sign_on_through_the_identity_provider(site, browser, tmp_path):
    site.idp.user = {"sub": "carol", "groups": ["hr"]}
    browser.get(site.base + "/")
    wait(browser, lambda d: shown(d, "sso"), what="the SSO button")
    browser.find_element(By.ID, "sso").click()
    wait(browser, lambda d: shown(d, "question"), what="signed in through the provider")
    assert browser.find_element(By.ID, "who").text == "Signed in as carol"
    assert browser.current_url == site.base + "/"  # the code is gone from the address
    ask(browser, LEAVE)
    assert "Kestrel Labs Employee Handbook" in source_titles(browser)  # carol is in hr
    assert not site.idp.refused


def test_an_administrator_uploads_changes_access_deletes_and_reads_the_last_report(site, browser, tmp_path):
    sign_in(browser, site, site.keys["root"])
    browser.find_element(By.ID, "show-admin").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#documents tbody tr"), what="the documents")
    report = browser.find_element(By.ID, "ingest-report").text
    assert "files: 1 added" in report and "corrupt.pdf" in report and "Failed:" in report
    lab = tmp_path / "robot-lab.md"
    lab.write_text(LAB)
    browser.find_element(By.ID, "upload-file").send_keys(str(lab))
    browser.find_element(By.ID, "upload-acl").send_keys("group:eng")
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    wait(browser, lambda d: "Uploaded" in d.find_element(By.ID, "admin-status").text, 60, what="the upload")
    assert "Uploaded Robot lab: added" in browser.find_element(By.ID, "admin-status").text

    def row():  # type: ignore[no-untyped-def]
        rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#documents tbody tr") if "Robot lab" in r.text]
        return rows[0] if rows else None

    browser.find_element(By.ID, "docs-next").click() if row() is None else None
    wait(browser, lambda d: row() is not None, what="the uploaded document's row")
    acl = row().find_element(By.CSS_SELECTOR, "input")
    assert acl.get_attribute("value") == "group:eng"
    browser.save_screenshot(str(tmp_path / "admin.png"))
    doc_id = row().get_attribute("data-id")
    as_bob = {"Authorization": f"Bearer {site.keys['bob']}"}
    assert httpx.get(f"{site.base}/v1/documents/{doc_id}", headers=as_bob).status_code == 200
    acl.clear()
    acl.send_keys("group:hr")
    row().find_element(By.XPATH, ".//button[text()='Save']").click()
    wait(browser, lambda d: "Saved" in d.find_element(By.ID, "admin-status").text, what="the access list saved")
    assert httpx.get(f"{site.base}/v1/documents/{doc_id}", headers=as_bob).status_code == 404
    row().find_element(By.XPATH, ".//button[text()='Delete']").click()
    browser.switch_to.alert.accept()
    wait(browser, lambda d: "Deleted" in d.find_element(By.ID, "admin-status").text, what="the delete")
    assert row() is None
    as_root = {"Authorization": f"Bearer {site.keys['root']}"}
    assert httpx.get(f"{site.base}/v1/documents/{doc_id}", headers=as_root).status_code == 404
    # a bad access list is refused in the service's words, and nothing changes
    first = browser.find_element(By.CSS_SELECTOR, "#documents tbody tr input")
    first.clear()
    first.send_keys("everyone")
    browser.find_element(By.CSS_SELECTOR, "#documents tbody tr").find_element(
        By.XPATH, ".//button[text()='Save']").click()
    wait(browser, lambda d: d.find_element(By.ID, "admin-error").text, what="the refusal")
    assert "acl" in browser.find_element(By.ID, "admin-error").text


def test_keyboard_only_on_a_phone_sized_screen(site, tmp_path):
    driver = chrome(tmp_path / "chrome", 390, 844)
    try:
        driver.get(site.base + "/")
        wait(driver, lambda d: d.switch_to.active_element.get_attribute("id") == "api-key", what="focus on the key")
        driver.switch_to.active_element.send_keys(site.keys["alice"] + Keys.ENTER)
        wait(driver, lambda d: d.switch_to.active_element.get_attribute("id") == "question",
             what="focus on the question box")
        driver.switch_to.active_element.send_keys(LEAVE + Keys.ENTER)
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#log > .turn:not([aria-busy]) a.cite"),
             60, what="the answer")
        driver.save_screenshot(str(tmp_path / "phone.png"))
        # nothing wider than the screen
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        # every control has a name a screen reader can say
        unnamed = driver.execute_script("""
            return [...document.querySelectorAll('button, input, textarea, a[href]')]
              .filter(e => e.offsetParent !== null)
              .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length) || e.textContent.trim()))
              .map(e => e.outerHTML);""")
        assert unnamed == []
        # Tab to the first citation, open it with Enter, close with Escape: focus comes back
        for _ in range(40):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            if "cite" in (driver.switch_to.active_element.get_attribute("class") or ""):
                break
        link = driver.switch_to.active_element
        assert "cite" in link.get_attribute("class")
        link.send_keys(Keys.ENTER)
        wait(driver, lambda d: d.find_element(By.ID, "preview").get_attribute("open") is not None, what="the dialog")
        assert driver.switch_to.active_element.get_attribute("id") == "preview-close"
        wait(driver, lambda d: d.find_elements(By.ID, "preview-image"), what="the page image")
        driver.save_screenshot(str(tmp_path / "phone-preview.png"))
        driver.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait(driver, lambda d: d.find_element(By.ID, "preview").get_attribute("open") is None, what="closed")
        assert driver.switch_to.active_element == link
    finally:
        driver.quit()


@pytest.fixture
def agent_site(built_index, tmp_path) -> Iterator[tuple[str, ScriptedLLM]]:
    """Another `quelle serve`, with agent mode on a scripted language model over HTTP (no keys)."""
    data_dir = tmp_path / "index"
    shutil.copytree(built_index, data_dir)
    llm = ScriptedLLM()
    port = free_port()
    try:
        with serve(data_dir, port, tmp_path, QUELLE_AUTH="off", QUELLE_LLM_BASE_URL=llm.base_url,
                   QUELLE_LLM_MODEL="scripted-model", QUELLE_LLM_API_KEY="test-key", QUELLE_AGENT_PLAN="false",
                   QUELLE_LLM_MAX_RETRIES="0"):
            yield f"http://127.0.0.1:{port}", llm
    finally:
        llm.close()


def test_agent_steps_are_shown_collapsed(agent_site, browser, tmp_path):
    base, llm = agent_site
    step = json.dumps({"thought": "find the per diem", "action": "search", "input": "per diem outside Europe"})
    llm.script(step, json.dumps({"thought": "enough", "action": "answer", "input": ""}),
               Reply(deltas=["The per diem outside Europe ", "is 80 EUR per day [1]."]))
    browser.get(base + "/")
    wait(browser, lambda d: shown(d, "agent-mode"), what="the agent mode switch")
    assert browser.find_element(By.ID, "who").text == "Local use (no sign-in)"
    browser.find_element(By.ID, "agent-mode").click()
    turn = ask(browser, "What is the per diem outside Europe for a three-day trip?")
    assert "80 EUR per day" in turn.find_element(By.CSS_SELECTOR, ".a").text
    details = turn.find_element(By.CSS_SELECTOR, "details.steps")
    assert details.get_attribute("open") is None  # collapsed
    summary = details.find_element(By.TAG_NAME, "summary")
    assert summary.text == "Agent steps (1)"
    summary.click()
    assert "search(per diem outside Europe)" in details.text and "find the per diem" in details.text
    browser.save_screenshot(str(tmp_path / "agent.png"))
    sent = [r["body"] for r in llm.requests]
    assert len(sent) == 3 and sent[0]["response_format"]["type"] == "json_schema"
