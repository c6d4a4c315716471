"""Table of a bench/load.sh run (bench/.cache/load/results.json): p50/p99, throughput, errors, soak memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: Path) -> None:
    rows = json.loads(path.read_text())
    print("| route | connections | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        res = r["result"]
        errors = res["non_2xx"] + res["connect_errors"] + res["read_errors"] + res["write_errors"] + res["timeouts"]
        label = r["path"] + (f" (soak {r['soak_seconds']} s)" if "soak_seconds" in r else "")
        print(f"| {label} | {r['connections']} | {res['rps']:.1f} | {res['p50_ms']:.0f} | {res['p99_ms']:.0f} | "
              f"{errors} of {res['requests']} |")
    for r in rows:
        if r.get("rss_kb"):
            rss = [x / 1024 for x in r["rss_kb"]]
            warm = rss[6:] or rss  # from the first minute on: the first samples are the start-up and warm-up
            third = max(1, len(warm) // 3)
            early, late = sum(warm[:third]) / third, sum(warm[-third:]) / third
            print(f"\nsoak memory (server RSS, MB, sampled every 10 s): at start {rss[0]:.1f}, after 10 s "
                  f"{rss[min(1, len(rss) - 1)]:.1f}; from the first minute on: first third mean {early:.1f}, last "
                  f"third mean {late:.1f}, max {max(warm):.1f} ({len(rss)} samples, growth {late - early:+.1f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench/.cache/load/results.json"))
