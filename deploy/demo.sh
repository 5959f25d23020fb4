#!/usr/bin/env bash
# `make demo`: the local Kafka broker (started by make), one segstream worker, a simulated
# stream of six tiny shops, the segment changes printed as they happen, and then a worker
# and broker that keep running to explore: the token, the shops and curl lines to paste are
# printed at the end. `make demo-stop` stops both; a second `make demo` reuses the worker
# (its events are the same history again: all counted as duplicates).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source deploy/dev-env.sh
py=.venv/bin/python
auth=(-H "Authorization: Bearer $dev_token")
say() { printf '\n== %s\n' "$*"; }
ready() { curl -fs "$dev_url/ready" >/dev/null 2>&1; }

if ready; then
    say "a segstream worker already answers on $dev_url: using it"
else
    say "starting a segstream worker in the background (log: $dev_dir/worker.log, web: $dev_url)"
    nohup .venv/bin/segstream worker >>"$dev_dir/worker.log" 2>&1 </dev/null &
    echo $! >"$dev_dir/worker.pid"
    for _ in $(seq 1 180); do
        ready && break
        if ! kill -0 "$(cat "$dev_dir/worker.pid")" 2>/dev/null; then
            echo "the worker exited; its log:" >&2; tail -30 "$dev_dir/worker.log" >&2; exit 1
        fi
        sleep 0.5
    done
    ready || { echo "worker not ready after 90 s; its log: $dev_dir/worker.log" >&2; exit 1; }
fi

counted() {  # a sum over the worker's series of one metric (and label filter)
    curl -fs "$dev_url/metrics" | awk -v m="^$1" '$0 ~ m {s += $NF} END {print s + 0}' || echo 0
}
changes_before=$(counted 'segstream_segment_changes_total')
duplicates_before=$(counted 'segstream_events_total[{]outcome="duplicate"')

say "segment changes as they happen (shop · customer · model: previous → current)"
.venv/bin/segstream watch --seconds 600 --idle-exit 10 --every "${DEMO_EVERY:-1}" &
watcher=$!
trap 'kill "$watcher" 2>/dev/null || true' EXIT
sleep 2

say "publishing a simulated year end of six tiny shops with their visitors (1% bad records, 1% duplicates)"
.venv/bin/segstream simulate --shops-per-kind 1 --customers "${DEMO_CUSTOMERS:-25}" --days 150 \
    --rate "${DEMO_RATE:-250}" --invalid-ratio 0.01 --duplicate-ratio 0.01 \
    --out-of-order-ratio 0.02 --touchpoints --progress-every 1000 >&2
wait "$watcher" || true
trap - EXIT

say "what the worker counted ($dev_url/metrics)"
curl -fs "$dev_url/metrics" | grep -E '^segstream_(events|dead_letters|segment_changes)_total' || true
if [[ "$(counted 'segstream_segment_changes_total')" == "$changes_before" ]] \
    && [[ "$(counted 'segstream_events_total[{]outcome="duplicate"')" != "$duplicates_before" ]]; then
    echo "no segment changed: this broker already holds this history (an earlier make demo), so"
    echo "every event counted as a duplicate; make demo-stop && make clean, then make demo, starts afresh"
fi

say "segment sizes of one shop (GET /shops/coffee-roaster-1/segments)"
curl -fs "${auth[@]}" "$dev_url/shops/coffee-roaster-1/segments" | "$py" -m json.tool

say "its journey funnel since October (GET /shops/coffee-roaster-1/journey?months=3)"
curl -fs "${auth[@]}" "$dev_url/shops/coffee-roaster-1/journey?months=3" \
    | "$py" -c 'import json, sys; j = json.load(sys.stdin); [print(r.get("cohort") or r["channel"], " -> ".join(s["stage"] + " " + str(s["customers"]) for s in r["funnel"]["stages"])) for r in j["cohorts"] + j["channels"]]'

say "who moved where in its lifecycle in December (GET /shops/coffee-roaster-1/flows?model=lifecycle&start=2025-12-01)"
curl -fs "${auth[@]}" "$dev_url/shops/coffee-roaster-1/flows?model=lifecycle&start=2025-12-01" \
    | "$py" -c 'import json, sys; j = json.load(sys.stdin); [print(f["from"] or "(new)", "->", f["to"] or "(left)", f["customers"]) for f in j["flows"]] or print("no moves counted (a worker older than segment flows processed this history)")'

shops="coffee-roaster-1 tea-house-1 snack-box-1 meal-kit-1 soap-maker-1 book-club-1"
cat <<DONE

== the worker and the broker keep running: explore (make demo-stop stops both)
token (platform scope; kept in $dev_dir/token):
    TOKEN=$dev_token
shops: $shops
    curl -s -H "Authorization: Bearer \$TOKEN" $dev_url/shops/tea-house-1/segments
    curl -s -H "Authorization: Bearer \$TOKEN" '$dev_url/shops/coffee-roaster-1/metrics?grain=month&start=2025-11-01'
    curl -s -H "Authorization: Bearer \$TOKEN" $dev_url/shops/book-club-1/customers/c-0001
    curl -s -H "Authorization: Bearer \$TOKEN" $dev_url/shops/tea-house-1/segments/lifecycle/at_risk/members.csv
the console (in a browser): $dev_url/console#token=$dev_token&shop=coffee-roaster-1
the contract: $dev_url/openapi.json · metrics: $dev_url/metrics · changes: .venv/bin/segstream watch --from-start
DONE
