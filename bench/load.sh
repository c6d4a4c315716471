#!/usr/bin/env bash
# Load on loopback with wrk: /v1/search and /v1/ask at 16, 64 and 256 connections, then a soak on /v1/search
# that samples the server's memory. Prints a table and writes bench/.cache/load/results.json.
#
#   bench/load.sh [DATA_DIR]                       # default: a fresh index of samples/handbook
#   DURATION=30 SOAK=600 CONNECTIONS="16 64 256" bench/load.sh
#
# Needs wrk (Debian: apt-get install wrk). The server runs with authentication on (a key is made) and no rate
# limit; the same machine runs wrk, so the figures are for one 2-core box under its own load.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DURATION=${DURATION:-30}
SOAK=${SOAK:-600}
CONNECTIONS=${CONNECTIONS:-"16 64 256"}
PORT=${PORT:-8799}
OUT=bench/.cache/load
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 2; }

DATA=${1:-}
if [ -z "$DATA" ]; then
  DATA=$OUT/index
  rm -rf "$DATA"
  $PY -m cli.main ingest samples/handbook --data-dir "$DATA" --quiet
fi
KEY=$($PY -m cli.main keys create --name load-bench --groups admin --data-dir "$DATA" | awk '{print $1; exit}')
QUELLE_RATE_LIMIT=0 QUELLE_LOG_LEVEL=WARNING $PY -m cli.main serve --data-dir "$DATA" --port "$PORT" \
  > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; $PY -m cli.main keys revoke load-bench --data-dir "$DATA" >/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "server did not start, see $OUT/serve.log" >&2; exit 1; }

run() {  # path connections seconds -> one JSON line
  QUELLE_KEY=$KEY QUELLE_PATH=$1 wrk -t2 -c"$2" -d"$3"s --timeout 60s -s bench/load/post.lua \
    "http://127.0.0.1:$PORT" | sed -n 's/^RESULT //p'
}
rss_kb() { ps -o rss= -p "$SERVER" | tr -d ' '; }

echo "[" > "$OUT/results.json.tmp"
first=1
for path in /v1/search /v1/ask; do
  run "$path" 4 5 >/dev/null  # warm-up
  for c in $CONNECTIONS; do
    line=$(run "$path" "$c" "$DURATION")
    [ $first -eq 1 ] || echo "," >> "$OUT/results.json.tmp"
    first=0
    echo "{\"path\": \"$path\", \"connections\": $c, \"result\": $line}" >> "$OUT/results.json.tmp"
    echo "$path c=$c $line"
  done
done

if [ "$SOAK" -gt 0 ]; then
  : > "$OUT/soak-rss.txt"
  (while kill -0 $SERVER 2>/dev/null; do echo "$(date +%s) $(rss_kb)" >> "$OUT/soak-rss.txt"; sleep 10; done) &
  SAMPLER=$!
  line=$(run /v1/search 16 "$SOAK")
  kill $SAMPLER 2>/dev/null || true
  echo "soak /v1/search c=16 ${SOAK}s $line"
  echo ", {\"path\": \"/v1/search\", \"connections\": 16, \"soak_seconds\": $SOAK, \"result\": $line, \"rss_kb\": [$(awk '{printf "%s%s", (NR>1?",":""), $2}' "$OUT/soak-rss.txt")]}" >> "$OUT/results.json.tmp"
fi
echo "]" >> "$OUT/results.json.tmp"
mv "$OUT/results.json.tmp" "$OUT/results.json"
$PY bench/load_report.py "$OUT/results.json"
