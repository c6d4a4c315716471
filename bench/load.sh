#!/usr/bin/env bash
# Load on loopback with wrk: /v1/search and /v1/ask at 16, 64 and 256 connections; both again on a server
# without the embedding cache (every answer embeds its sentences: the cold path); then a soak of /v1/search and
# /v1/ask together that samples the server's memory. Prints a table and writes bench/.cache/load/results.json.
#
#   bench/load.sh [DATA_DIR]                       # default: a fresh index of samples/handbook
#   DURATION=30 SOAK=600 CONNECTIONS="16 64 256" COLD=16 bench/load.sh
#
# Questions: the 40 of tests/data/qa.jsonl and bench/load/post.lua (English, Japanese, Chinese, some not in the
# documents), drawn at random. Needs wrk (Debian: apt-get install wrk). The server runs with authentication on
# (a key is made) and no rate limit; the same machine runs wrk, so the figures are for one 2-core box under
# its own load. Requests that wait longer than QUELLE_QUEUE_TIMEOUT (30 s) for a CPU slot get 503.
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

COLD=${COLD:-16}
QUESTIONS=$OUT/questions.txt
$PY - "$QUESTIONS" <<'PY'
import json, re, sys
qs = [json.loads(line)["question"] for line in open("tests/data/qa.jsonl", encoding="utf-8") if line.strip()]
qs += re.findall(r'"((?:[^"\\]|\\.)*\?)"', open("bench/load/post.lua", encoding="utf-8").read())
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.writelines(json.dumps(q, ensure_ascii=False)[1:-1] + "\n" for q in dict.fromkeys(qs))
PY
DATA=${1:-}
if [ -z "$DATA" ]; then
  DATA=$OUT/index
  rm -rf "$DATA"
  $PY -m cli.main ingest samples/handbook --data-dir "$DATA" --quiet
fi
KEY=$($PY -m cli.main keys create --name load-bench --groups admin --data-dir "$DATA" | awk '{print $1; exit}')
SERVER=
start_server() {  # extra environment settings (VAR=value ...)
  [ -z "$SERVER" ] || { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }
  env QUELLE_RATE_LIMIT=0 QUELLE_LOG_LEVEL=WARNING "$@" $PY -m cli.main serve --data-dir "$DATA" --port "$PORT" \
    >> "$OUT/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0
    sleep 1
  done
  echo "server did not start, see $OUT/serve.log" >&2
  exit 1
}
trap 'kill $SERVER 2>/dev/null || true; $PY -m cli.main keys revoke load-bench --data-dir "$DATA" >/dev/null || true' EXIT
: > "$OUT/serve.log"
start_server

run() {  # path connections seconds -> one JSON line
  QUELLE_KEY=$KEY QUELLE_PATH=$1 QUELLE_QUESTIONS=$QUESTIONS wrk -t2 -c"$2" -d"$3"s --timeout 60s \
    -s bench/load/post.lua "http://127.0.0.1:$PORT" | sed -n 's/^RESULT //p'
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

if [ "$COLD" -gt 0 ]; then  # the cold path: no vector is reused, every request embeds its query and sentences
  start_server QUELLE_EMBED_CACHE=0
  for path in /v1/search /v1/ask; do
    run "$path" 2 5 >/dev/null
    line=$(run "$path" "$COLD" "$DURATION")
    echo ", {\"path\": \"$path (no embedding cache)\", \"connections\": $COLD, \"result\": $line}" >> "$OUT/results.json.tmp"
    echo "$path no cache c=$COLD $line"
  done
  start_server
fi

if [ "$SOAK" -gt 0 ]; then  # search and ask together, 8 connections each, the server's memory sampled
  : > "$OUT/soak-rss.txt"
  (while kill -0 $SERVER 2>/dev/null; do echo "$(date +%s) $(rss_kb)" >> "$OUT/soak-rss.txt"; sleep 10; done) &
  SAMPLER=$!
  run /v1/ask 8 "$SOAK" > "$OUT/soak-ask.txt" &
  ASKER=$!
  line=$(run /v1/search 8 "$SOAK")
  wait $ASKER
  kill $SAMPLER 2>/dev/null || true
  ask_line=$(cat "$OUT/soak-ask.txt")
  echo "soak ${SOAK}s /v1/search c=8 $line /v1/ask c=8 $ask_line"
  rss=$(awk '{printf "%s%s", (NR>1?",":""), $2}' "$OUT/soak-rss.txt")
  echo ", {\"path\": \"/v1/search\", \"connections\": 8, \"soak_seconds\": $SOAK, \"result\": $line, \"rss_kb\": [$rss]}" >> "$OUT/results.json.tmp"
  echo ", {\"path\": \"/v1/ask\", \"connections\": 8, \"soak_seconds\": $SOAK, \"result\": $ask_line}" >> "$OUT/results.json.tmp"
fi
echo "]" >> "$OUT/results.json.tmp"
mv "$OUT/results.json.tmp" "$OUT/results.json"
$PY bench/load_report.py "$OUT/results.json"
