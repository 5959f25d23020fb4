#!/usr/bin/env bash
# `make demo`: a local Kafka broker, one segstream worker, a simulated stream of tiny-shop
# events, and the segment changes printed as they happen. Each run uses fresh topics.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

run="demo-$(date +%s)"
port="${KAFKA_PORT:-9092}"
web_port="${DEMO_WEB_PORT:-6066}"
mkdir -p "var/$run"
export SEGSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:$port"
export SEGSTREAM_APP_ID="segstream-$run"
export SEGSTREAM_TOPIC_PREFIX="$run."
export SEGSTREAM_DATA_DIR="var/$run/worker"
export SEGSTREAM_WEB_PORT="$web_port"
export SEGSTREAM_LOG_LEVEL="${SEGSTREAM_LOG_LEVEL:-warning}"
py=.venv/bin/python
# a platform token for this run's query API (the worker keeps only its hash)
token_json="$("$py" -m service.tools.token platform --json)"
token="$("$py" -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$token_json")"
export SEGSTREAM_API_TOKENS="$("$py" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["api_tokens_entry"]))' <<<"$token_json")"
auth=(-H "Authorization: Bearer $token")

say() { printf '\n== %s\n' "$*"; }

say "starting a segstream worker (log: var/$run/worker.log, web: http://127.0.0.1:$web_port)"
"$py" -m service worker >"var/$run/worker.log" 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    if curl -fs "http://127.0.0.1:$web_port/ready" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$worker" 2>/dev/null; then
        echo "the worker exited; its log:" >&2; tail -30 "var/$run/worker.log" >&2; exit 1
    fi
    sleep 0.5
done
curl -fs "http://127.0.0.1:$web_port/ready" >/dev/null || { echo "worker not ready" >&2; exit 1; }

say "segment changes as they happen (shop · customer · model: previous → current)"
"$py" -m service.tools.watch --seconds 600 --idle-exit 10 --every "${DEMO_EVERY:-1}" &
watcher=$!
sleep 2

say "publishing a simulated year end of six tiny shops with their visitors (1% bad records, 1% duplicates)"
"$py" -m service.tools.simulate --shops-per-kind 1 --customers "${DEMO_CUSTOMERS:-25}" --days 150 \
    --rate "${DEMO_RATE:-250}" --invalid-ratio 0.01 --duplicate-ratio 0.01 \
    --out-of-order-ratio 0.02 --touchpoints --progress-every 1000 >&2
wait "$watcher"

say "what the worker counted (http://127.0.0.1:$web_port/metrics)"
curl -fs "http://127.0.0.1:$web_port/metrics" \
    | grep -E '^segstream_(events|dead_letters|segment_changes)_total' || true

say "segment sizes of one shop (GET /shops/coffee-roaster-1/segments)"
curl -fs "${auth[@]}" "http://127.0.0.1:$web_port/shops/coffee-roaster-1/segments" | "$py" -m json.tool

say "its churn and retention last month (GET /shops/coffee-roaster-1/metrics?grain=month&start=2025-11-01)"
curl -fs "${auth[@]}" "http://127.0.0.1:$web_port/shops/coffee-roaster-1/metrics?grain=month&start=2025-11-01" \
    | "$py" -c 'import json, sys; m = json.load(sys.stdin); print(json.dumps({k: m[k] for k in ("start", "end", "subscribers", "rates", "arpu", "ltv")}, indent=2))'
say "its journey funnel since October (GET /shops/coffee-roaster-1/journey?months=3)"
curl -fs "${auth[@]}" "http://127.0.0.1:$web_port/shops/coffee-roaster-1/journey?months=3" \
    | "$py" -c 'import json, sys; j = json.load(sys.stdin); [print(r.get("cohort") or r["channel"], " -> ".join(s["stage"] + " " + str(s["customers"]) for s in r["funnel"]["stages"])) for r in j["cohorts"] + j["channels"]]'
say "done: the broker keeps running (make kafka-down stops it); the worker was stopped"
