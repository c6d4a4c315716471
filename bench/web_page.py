"""How fast the web page loads and shows an answer, in Debian's headless Chromium against `quelle serve` on the
sample handbook (default embedder, authentication off), everything served locally.

    python bench/web_page.py [--loads 20]

Per load, from the browser's own clocks (Navigation Timing and performance.now()): the HTML document, the
`load` event (page, script and style), and "ready" (the page asked the service how to sign in and who the
caller is, and the question box is shown). First loads use a fresh browser profile (nothing cached); repeat
loads reuse it. Then the time from pressing Enter to the first streamed words and to the checked answer with
its sources, and to a cited page's highlighted image in the source view.
Needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu  # noqa: E402
from bench.query import start_server  # noqa: E402

QUESTIONS = ["How many days of paid annual leave do I get?", "What is the per diem outside Europe?",
             "東京オフィスでは週に何日在宅勤務できますか？", "上海办公室每月可以远程办公几天？"]

READY = """
const done = arguments[0];
const t0 = performance.now();
(function poll() {
  const q = document.getElementById('question');
  if (q && q.offsetParent !== null) {
    const nav = performance.getEntriesByType('navigation')[0];
    done({html: nav.responseEnd, load: nav.loadEventEnd || performance.now(), ready: performance.now()});
  } else setTimeout(poll, 5);
})();
"""

ASK = """
const [question, done] = arguments;
const log = document.getElementById('log');
const before = log.children.length;
let first = null;
const t0 = performance.now();
new MutationObserver(() => {
  const busy = document.querySelector('.turn[aria-busy] .a');
  if (first === null && busy && busy.textContent.length) first = performance.now() - t0;
}).observe(log, {childList: true, subtree: true, characterData: true});
const box = document.getElementById('question');
box.value = question;
document.getElementById('ask-form').requestSubmit();
(function poll() {
  const turns = log.querySelectorAll('.turn:not([aria-busy])');
  if (log.children.length > before && turns.length === log.children.length) done({first, all: performance.now() - t0});
  else setTimeout(poll, 5);
})();
"""

PREVIEW = """
const done = arguments[0];
const t0 = performance.now();
document.querySelector('#log > .turn:last-child a.cite').click();
(function poll() {
  const i = document.getElementById('preview-image');
  const m = document.querySelector('#preview-body mark');
  if ((i && i.complete && i.naturalWidth) || m) { done(performance.now() - t0); }
  else setTimeout(poll, 5);
})();
"""


def chrome(profile: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_script_timeout(120)
    return driver


def chromium_version() -> str:
    import subprocess

    out = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if len(out.split()) > 1 else "unknown"


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values):7.0f} ms (p90 {sorted(values)[int(0.9 * (len(values) - 1))]:.0f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loads", type=int, default=20)
    args = ap.parse_args()
    print(f"CPU: {cpu()}; Chromium {chromium_version()}")
    work = Path(tempfile.mkdtemp(prefix="quelle-web-bench-"))
    server = None
    try:
        data_dir = work / "index"
        import subprocess

        subprocess.run([sys.executable, "-m", "cli.main", "ingest", str(ROOT / "samples" / "handbook"),
                        "--data-dir", str(data_dir), "--quiet"], cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        server, url = start_server(ROOT, data_dir)
        first: dict[str, list[float]] = {"html": [], "load": [], "ready": []}
        for i in range(args.loads):  # a fresh profile each time: nothing cached
            driver = chrome(work / f"fresh-{i}")
            try:
                driver.get(url + "/")
                got = driver.execute_async_script(READY)
            finally:
                driver.quit()
            for k in first:
                first[k].append(got[k])
        driver = chrome(work / "warm")
        try:
            again: dict[str, list[float]] = {"html": [], "load": [], "ready": []}
            driver.get(url + "/")
            driver.execute_async_script(READY)
            for _ in range(args.loads):
                driver.get(url + "/")
                got = driver.execute_async_script(READY)
                for k in again:
                    again[k].append(got[k])
            asks: list[dict[str, float]] = []
            previews: list[float] = []
            for round_ in range(3):
                for q in QUESTIONS:
                    asks.append(driver.execute_async_script(ASK, q))
                    if round_ == 0:
                        previews.append(driver.execute_async_script(PREVIEW))
                        driver.execute_script("document.getElementById('preview').close()")
        finally:
            driver.quit()
        print(f"page load, fresh browser profile ({args.loads} loads):")
        for k, label in (("html", "HTML received"), ("load", "load event"), ("ready", "ready to ask")):
            print(f"  {label:15s} {median_ms(first[k])}")
        print(f"page load, repeat visit ({args.loads} loads):")
        for k, label in (("html", "HTML received"), ("load", "load event"), ("ready", "ready to ask")):
            print(f"  {label:15s} {median_ms(again[k])}")
        print(f"ask ({len(asks)} questions, extractive answerer, en/ja/zh):")
        print(f"  first words     {median_ms([a['first'] for a in asks if a['first'] is not None])}")
        print(f"  whole answer    {median_ms([a['all'] for a in asks])}")
        print(f"  source view     {median_ms(previews)} (page image drawn with the highlight, or marked section)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
