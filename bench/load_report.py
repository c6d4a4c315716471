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
            third = max(1, len(rss) // 3)
            early, late = sum(rss[:third]) / third, sum(rss[-third:]) / third
            print(f"\nsoak memory (server RSS, MB): start {rss[0]:.0f}, first third mean {early:.0f}, last third "
                  f"mean {late:.0f}, max {max(rss):.0f} ({len(rss)} samples, growth {late - early:+.0f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench/.cache/load/results.json"))
