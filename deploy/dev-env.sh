# Sourced by deploy/demo.sh and `make worker`: the settings of the local development
# worker (defaults: app id segstream, topics segstream.*, the dev broker on 127.0.0.1:9092,
# web on 127.0.0.1:6066) and its query-API token, made once and kept in var/demo/.
# The worker reads the token's hash from var/demo/tokens.json (SEGSTREAM_API_TOKENS_FILE),
# so every later `make demo` or `make worker` answers the same token.
dev_dir="${DEMO_DIR:-var/demo}"
mkdir -p "$dev_dir"
export SEGSTREAM_KAFKA_BOOTSTRAP="${SEGSTREAM_KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}"
export SEGSTREAM_DATA_DIR="${SEGSTREAM_DATA_DIR:-$dev_dir/worker}"
export SEGSTREAM_WEB_PORT="${SEGSTREAM_WEB_PORT:-${DEMO_WEB_PORT:-6066}}"
export SEGSTREAM_LOG_LEVEL="${SEGSTREAM_LOG_LEVEL:-warning}"
export SEGSTREAM_API_TOKENS_FILE="$dev_dir/tokens.json"
if [[ ! -s "$dev_dir/token" || ! -s "$SEGSTREAM_API_TOKENS_FILE" ]]; then
    made="$(.venv/bin/segstream token platform --json)"
    .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$made" >"$dev_dir/token"
    .venv/bin/python -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["api_tokens_entry"]))' \
        <<<"$made" >"$SEGSTREAM_API_TOKENS_FILE"
    chmod 600 "$dev_dir/token"
fi
dev_token="$(cat "$dev_dir/token")"
dev_url="http://127.0.0.1:$SEGSTREAM_WEB_PORT"
