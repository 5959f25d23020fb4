#!/usr/bin/env bash
# Fetch and run a real single-node Apache Kafka broker (KRaft combined mode) for local
# development and tests. No Docker, no system-wide install: the broker jars are resolved by
# Maven (deploy/kafka/pom.xml) into deploy/kafka/.cache/libs-<version> and run with the local
# Java 17.
#
# Usage: deploy/kafka/kafka.sh fetch|start|stop|status|logs [-f]
#
# Settings (environment):
#   KAFKA_VERSION          Apache Kafka release, 3.x or 4.x   (default 3.9.1; 4.4.0 is tested too)
#   KAFKA_PORT             PLAINTEXT listener port            (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port     (default KAFKA_PORT+1)
#   KAFKA_DATA_DIR         data dir: config, logs, pid, data  (default deploy/kafka/.cache/broker-PORT)
#   KAFKA_HEAP             JVM max heap                       (default 512m)
#   KAFKA_START_TIMEOUT    seconds to wait for readiness      (default 60)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM      (default 20)
#   KAFKA_LOG_LINES        lines shown by `logs`              (default 100)
#   KAFKA_NODE_ID          this node's id in a cluster        (default 1)
#   KAFKA_VOTERS           the controller quorum, id@host:port,... (default this node alone)
#   KAFKA_CLUSTER_ID       the cluster id every node is formatted with (default: a new one)
#   KAFKA_REPLICATION      replication of new and internal topics (default 1)
#   KAFKA_MIN_ISR          min.insync.replicas, also of the transaction log (default 1)
#   KAFKA_EXTRA_CONFIG     a file of properties appended to the rendered config (a later
#                          key wins: e.g. another listener; tests use it for SASL_SSL)
#   KAFKA_SCRAM_USERS      SCRAM credentials created when the storage is formatted, as
#                          StorageTool's --add-scram takes them, several separated by ';'
#                          ('SCRAM-SHA-512=[name=segstream,password=secret]')
#
# Several brokers can run at once as long as each has its own KAFKA_PORT (the data dir and
# the controller port follow it by default). Every subcommand must be given the same
# settings as the `start` it refers to. A data dir formatted by one Kafka version is not
# started by another (move it with KAFKA_DATA_DIR, or `make clean`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="$HERE/.cache"
POM="$HERE/pom.xml"
TEMPLATE="$HERE/server.properties.template"

KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
# Each version's jars in a folder of their own, so 3.x and 4.x brokers can run side by side.
LIBS_DIR="$CACHE_DIR/libs-$KAFKA_VERSION"
# The major version picks the pom profile (logging backend) and how logging is configured:
# Kafka 4.0 moved from log4j 1 (reload4j) to log4j2 (KIP-653).
KAFKA_MAJOR="${KAFKA_VERSION%%.*}"
if [[ "$KAFKA_MAJOR" == 4 ]]; then
    LOGGING_FLAG="-Dlog4j2.configurationFile=$HERE/log4j2.properties"
else
    LOGGING_FLAG="-Dlog4j.configuration=file:$HERE/log4j.properties"
fi

PORT="${KAFKA_PORT:-9092}"
if [[ -n "${KAFKA_CONTROLLER_PORT:-}" ]]; then
    CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT"
elif [[ "$PORT" =~ ^[0-9]{1,5}$ ]]; then
    CONTROLLER_PORT="$((10#$PORT + 1))"
else
    CONTROLLER_PORT="" # rejected by check_settings
fi
DATA_DIR="${KAFKA_DATA_DIR:-$CACHE_DIR/broker-$PORT}"
HEAP="${KAFKA_HEAP:-512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-20}"
LOG_LINES="${KAFKA_LOG_LINES:-100}"
NODE_ID="${KAFKA_NODE_ID:-1}"
VOTERS="${KAFKA_VOTERS:-$NODE_ID@127.0.0.1:$CONTROLLER_PORT}"
REPLICATION="${KAFKA_REPLICATION:-1}"
MIN_ISR="${KAFKA_MIN_ISR:-1}"

# Make the data dir absolute: the broker runs with its own working directory.
case "$DATA_DIR" in
    /*) ;;
    *) DATA_DIR="$PWD/$DATA_DIR" ;;
esac

PID_FILE="$DATA_DIR/kafka.pid"
CONFIG_FILE="$DATA_DIR/server.properties"
CLUSTER_ID_FILE="$DATA_DIR/cluster.id"
VERSION_FILE="$DATA_DIR/kafka.version"
LOG_DIRS="$DATA_DIR/kraft-data"
KAFKA_LOGS_DIR="$DATA_DIR/logs"
SERVER_LOG="$KAFKA_LOGS_DIR/server.log"
STDOUT_LOG="$KAFKA_LOGS_DIR/stdout.log"

ADDR="127.0.0.1:$PORT"

say() { printf 'kafka.sh: %s\n' "$*"; }
err() { printf 'kafka.sh: ERROR: %s\n' "$*" >&2; }

is_port_number() { [[ "$1" =~ ^[0-9]+$ ]] && ((1 <= $1 && $1 <= 65535)); }

check_version() {
    if [[ ! "$KAFKA_VERSION" =~ ^[34]\.[0-9]+\.[0-9]+$ ]]; then
        err "KAFKA_VERSION must be an Apache Kafka 3.x or 4.x release such as 3.9.1 or 4.4.0, got '$KAFKA_VERSION'"
        exit 2
    fi
}

check_settings() {
    check_version
    if ! is_port_number "$PORT"; then
        err "KAFKA_PORT must be a port number, got '$PORT'"
        exit 2
    fi
    if ! is_port_number "$CONTROLLER_PORT" || [[ "$CONTROLLER_PORT" == "$PORT" ]]; then
        err "KAFKA_CONTROLLER_PORT must be a port number different from KAFKA_PORT, got '$CONTROLLER_PORT'"
        exit 2
    fi
}

# ---------------------------------------------------------------------------- fetch

pom_hash() { sha256sum "$POM" | cut -c1-16; }

libs_ready() {
    [[ -f "$LIBS_DIR/.fetched-$(pom_hash)" ]] && [[ -f "$LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

# Serialize with other kafka.sh processes: fd 8 (opened on .cache/.fetch.lock) guards the jar
# cache, fd 9 (on DATA_DIR/.kafka.sh.lock) one broker. The broker JVM gets neither fd.
lock_wait() {
    local fd="$1" what="$2"
    command -v flock >/dev/null 2>&1 || return 0
    if ! flock -w 180 "$fd"; then
        err "timed out waiting for another kafka.sh to finish with $what"
        exit 1
    fi
}

cmd_fetch() {
    check_version
    mkdir -p "$CACHE_DIR"
    exec 8>"$CACHE_DIR/.fetch.lock"
    lock_wait 8 "the jar cache"
    fetch_locked
    exec 8>&-
}

fetch_locked() {
    if libs_ready; then
        say "broker jars present in ${LIBS_DIR#"$PWD"/} (pom unchanged), nothing to fetch"
        return 0
    fi
    if ! command -v mvn >/dev/null 2>&1; then
        err "Maven (mvn) is needed to fetch the Kafka broker jars; install it (e.g. apt-get install maven)"
        exit 1
    fi
    if ! command -v java >/dev/null 2>&1; then
        err "Java (17 or newer) is needed to run the Kafka broker; install it (e.g. apt-get install openjdk-17-jre-headless)"
        exit 1
    fi
    say "fetching Apache Kafka $KAFKA_VERSION broker jars with Maven into ${LIBS_DIR#"$PWD"/} ..."
    local started=$SECONDS
    local tmp="$LIBS_DIR.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$CACHE_DIR"
    # Maven 3.8 prints ANSI reset codes even in batch mode; strip them (pipefail keeps its status).
    if ! (cd "$HERE" && mvn -q -B -Dstyle.color=never "-Pkafka$KAFKA_MAJOR" \
        "-Dkafka.version=$KAFKA_VERSION" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'); then
        rm -rf "$tmp"
        err "Maven could not resolve the Kafka $KAFKA_VERSION broker jars (see the output above)"
        exit 1
    fi
    # Swap in the new set as a whole so jars of an older pom never linger on the classpath.
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
    touch "$LIBS_DIR/.fetched-$(pom_hash)"
    say "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------- process helpers

# True if pid exists and is not a zombie (an exited child nobody has reaped yet).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state=""
    if [[ -r "/proc/$1/stat" ]]; then
        state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null || true)"
    fi
    [[ "$state" != "Z" ]]
}

# Print the pid of the broker recorded for this data dir if that process is alive and is
# really our broker (guards against stale pid files and recycled pids).
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 1
    alive "$pid" || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $CONFIG_FILE" || return 1
    fi
    printf '%s\n' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

broker_started() { [[ -f "$SERVER_LOG" ]] && grep -q "Kafka Server started" "$SERVER_LOG"; }

# Terminate pid: SIGTERM, wait up to $2 seconds, then SIGKILL.
terminate() {
    local pid="$1" timeout="$2" waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while alive "$pid"; do
        if ((waited >= timeout * 10)); then
            say "broker (pid $pid) still alive after ${timeout} s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

show_logs_on_failure() {
    local f
    for f in "$SERVER_LOG" "$STDOUT_LOG"; do
        if [[ -s "$f" ]]; then
            printf -- '---- last 40 lines of %s ----\n' "$f" >&2
            tail -n 40 "$f" >&2
        fi
    done
    printf -- '---- end of broker logs ----\n' >&2
}

# ---------------------------------------------------------------------------- start

render_config() {
    local line
    : >"$CONFIG_FILE.tmp"
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line//\$\{PORT\}/$PORT}"
        line="${line//\$\{CONTROLLER_PORT\}/$CONTROLLER_PORT}"
        line="${line//\$\{LOG_DIRS\}/$LOG_DIRS}"
        line="${line//\$\{NODE_ID\}/$NODE_ID}"
        line="${line//\$\{VOTERS\}/$VOTERS}"
        line="${line//\$\{REPLICATION\}/$REPLICATION}"
        line="${line//\$\{MIN_ISR\}/$MIN_ISR}"
        printf '%s\n' "$line" >>"$CONFIG_FILE.tmp"
    done <"$TEMPLATE"
    if [[ -n "${KAFKA_EXTRA_CONFIG:-}" ]]; then
        printf '\n# appended from KAFKA_EXTRA_CONFIG (%s)\n' "$KAFKA_EXTRA_CONFIG" >>"$CONFIG_FILE.tmp"
        cat "$KAFKA_EXTRA_CONFIG" >>"$CONFIG_FILE.tmp"
    fi
    mv "$CONFIG_FILE.tmp" "$CONFIG_FILE"
}

java_cmd() {
    JAVA_CMD=(java "-Xmx$HEAP" -Xss1m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -Djava.awt.headless=true
        "$LOGGING_FLAG"
        "-Dkafka.logs.dir=$KAFKA_LOGS_DIR"
        -cp "$LIBS_DIR/*")
}

format_storage() {
    if [[ -f "$LOG_DIRS/meta.properties" ]]; then
        return 0
    fi
    java_cmd
    if [[ ! -s "$CLUSTER_ID_FILE" && -n "${KAFKA_CLUSTER_ID:-}" ]]; then
        printf '%s\n' "$KAFKA_CLUSTER_ID" >"$CLUSTER_ID_FILE"
    fi
    if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
        local new_id
        if ! new_id="$("${JAVA_CMD[@]}" kafka.tools.StorageTool random-uuid 2>&1)" ||
            [[ ! "$new_id" =~ ^[A-Za-z0-9_-]{22}$ ]]; then
            err "could not generate a cluster id with kafka.tools.StorageTool random-uuid:"
            printf '%s\n' "$new_id" >&2
            exit 1
        fi
        printf '%s\n' "$new_id" >"$CLUSTER_ID_FILE"
    fi
    local cluster_id
    cluster_id="$(tr -d '[:space:]' <"$CLUSTER_ID_FILE")"
    say "formatting KRaft storage in ${LOG_DIRS#"$PWD"/} (cluster id $cluster_id)"
    local out scram=() user
    if [[ -n "${KAFKA_SCRAM_USERS:-}" ]]; then
        IFS=';' read -ra users <<<"$KAFKA_SCRAM_USERS"
        for user in "${users[@]}"; do scram+=(--add-scram "$user"); done
    fi
    if ! out="$("${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$CONFIG_FILE" --ignore-formatted "${scram[@]}" 2>&1)"; then
        err "formatting the broker storage failed:"
        printf '%s\n' "$out" >&2
        exit 1
    fi
    printf '%s\n' "$KAFKA_VERSION" >"$VERSION_FILE"
}

# A data dir is run by the Kafka version that formatted it: 4.x rewrites 3.x metadata beyond
# what 3.x reads back, and an upgrade in place is not what a dev/test broker is for.
check_data_version() {
    [[ -f "$LOG_DIRS/meta.properties" && -s "$VERSION_FILE" ]] || return 0
    local formatted
    formatted="$(tr -d '[:space:]' <"$VERSION_FILE")"
    if [[ "$formatted" != "$KAFKA_VERSION" ]]; then
        err "the data dir ${DATA_DIR#"$PWD"/} was formatted by Kafka $formatted, not KAFKA_VERSION=$KAFKA_VERSION: start it with KAFKA_VERSION=$formatted, or choose another KAFKA_DATA_DIR (or remove this one: make clean)"
        exit 1
    fi
}

cmd_start() {
    check_settings
    mkdir -p "$DATA_DIR"
    exec 9>"$DATA_DIR/.kafka.sh.lock"
    lock_wait 9 "this broker"
    check_data_version
    local pid
    if pid="$(running_pid)"; then
        say "already running on $ADDR (pid $pid, data dir ${DATA_DIR#"$PWD"/})"
        return 0
    fi
    if [[ -f "$PID_FILE" ]]; then
        say "removing stale pid file ${PID_FILE#"$PWD"/}"
        rm -f "$PID_FILE"
    fi
    if ! command -v java >/dev/null 2>&1; then
        err "Java (17 or newer) is needed to run the Kafka broker"
        exit 1
    fi
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            err "port 127.0.0.1:$p is already in use by another process; pick another with KAFKA_PORT / KAFKA_CONTROLLER_PORT"
            exit 1
        fi
    done

    libs_ready || cmd_fetch

    local started=$SECONDS
    mkdir -p "$DATA_DIR" "$LOG_DIRS" "$KAFKA_LOGS_DIR"
    render_config
    format_storage

    # Fresh log files for this run, so the readiness check cannot see an older start.
    local f
    for f in "$SERVER_LOG" "$STDOUT_LOG"; do
        if [[ -f "$f" ]]; then mv -f "$f" "$f.prev"; fi
    done

    say "starting Kafka $KAFKA_VERSION broker on $ADDR (controller 127.0.0.1:$CONTROLLER_PORT, heap $HEAP, data ${DATA_DIR#"$PWD"/})"
    java_cmd
    # setsid + nohup: the broker lives in its own session and survives the calling shell.
    # The inner bash writes its own pid and then execs java, so the pid file names the JVM.
    (
        cd "$DATA_DIR"
        # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
        nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
            "${JAVA_CMD[@]}" kafka.Kafka "$CONFIG_FILE" \
            </dev/null >"$STDOUT_LOG" 2>&1 8>&- 9>&- &
    )

    # Only liveness of the recorded pid counts here (not running_pid's command line check:
    # /proc/PID/cmdline can read empty while the launcher execs into java).
    local deadline=$((SECONDS + START_TIMEOUT)) reason=""
    pid=""
    while :; do
        [[ -n "$pid" || ! -s "$PID_FILE" ]] || pid="$(tr -dc '0-9' <"$PID_FILE")"
        if [[ -n "$pid" ]]; then
            if ! alive "$pid"; then
                reason="the broker process exited during start-up"
                break
            fi
            if port_open "$PORT" && broker_started; then
                break
            fi
        fi
        if ((SECONDS >= deadline)); then
            reason="the broker did not become ready within ${START_TIMEOUT} s"
            break
        fi
        sleep 0.2
    done

    if [[ -n "$reason" ]]; then
        err "Kafka broker on $ADDR failed to start: $reason"
        show_logs_on_failure
        if [[ -s "$PID_FILE" ]]; then
            pid="$(tr -dc '0-9' <"$PID_FILE")"
            if [[ -n "$pid" ]] && alive "$pid"; then
                say "killing the half-started broker (pid $pid)"
                terminate "$pid" 5
            fi
        fi
        rm -f "$PID_FILE"
        exit 1
    fi
    say "Kafka $KAFKA_VERSION broker ready on $ADDR (pid $pid) after $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------- stop / status / logs

cmd_stop() {
    check_settings
    if [[ -d "$DATA_DIR" ]]; then
        exec 9>"$DATA_DIR/.kafka.sh.lock"
        lock_wait 9 "this broker"
    fi
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        say "not running on $ADDR (nothing to stop)"
        return 0
    fi
    say "stopping Kafka broker on $ADDR (pid $pid) ..."
    local started=$SECONDS
    terminate "$pid" "$STOP_TIMEOUT"
    rm -f "$PID_FILE"
    say "stopped after $((SECONDS - started)) s"
}

cmd_status() {
    check_settings
    local pid
    if pid="$(running_pid)"; then
        say "running on $ADDR (pid $pid, controller 127.0.0.1:$CONTROLLER_PORT, data dir ${DATA_DIR#"$PWD"/})"
        return 0
    fi
    say "not running on $ADDR"
    return 3
}

cmd_logs() {
    if [[ ! -f "$SERVER_LOG" ]]; then
        say "no broker log yet at ${SERVER_LOG#"$PWD"/}"
        return 0
    fi
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n "$LOG_LINES" -F "$SERVER_LOG"
    fi
    tail -n "$LOG_LINES" "$SERVER_LOG"
    if [[ -s "$STDOUT_LOG" ]]; then
        printf -- '---- %s ----\n' "${STDOUT_LOG#"$PWD"/}"
        tail -n "$LOG_LINES" "$STDOUT_LOG"
    fi
}

usage() {
    sed -n '2,/^set -euo pipefail$/{/^set /d;p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    logs) shift; cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
