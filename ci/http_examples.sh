#!/usr/bin/env bash
# ci/http_examples.sh - runs the gRPC/HTTP examples end to end on Linux, as a user would:
#   grpc_greeter server + our tonic client (started first: it waits for the server),
#   axum_hello + curl --unix-socket (/ and /whoami, whose pid must be curl's),
#   then each server stopped through its stdin: exit 0, socket file gone.
# Needs curl. Builds the examples (debug) unless they are built already.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build -q -p localsock --all-features --example grpc_greeter --example axum_hello
EX=${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples
DIR=$(mktemp -d /tmp/localsock-http-examples.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT
fail() { echo "http_examples: FAILED: $*" >&2; exit 1; }

# A server whose stdin is a fifo we hold open: closing it stops the server gracefully.
start_server() {   # start_server NAME CMD... -> sets SERVER_PID, fd 7+N holds the fifo
    local tag=$1; shift
    mkfifo "$DIR/$tag.in"
    "$@" < "$DIR/$tag.in" > "$DIR/$tag.out" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}
wait_exit() {      # wait_exit PID SECS: the server's exit status, failing if it overstays
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid"; return $?; }
        sleep 0.05
    done
    fail "pid $pid did not exit within $secs s"
}

echo "== grpc_greeter: client first (waits for the server), then the server"
SOCK=$DIR/greeter.sock
"$EX/grpc_greeter" client "$SOCK" ci 3 > "$DIR/client.out" 2>&1 &
CLIENT=$!
PIDS+=("$CLIENT")
start_server greeter "$EX/grpc_greeter" server "$SOCK"
exec 7> "$DIR/greeter.in"
wait_exit "$CLIENT" 30 || fail "client: $(cat "$DIR/client.out")"
[[ $(grep -c '^Hello ci!$' "$DIR/client.out") == 3 ]] || fail "client output: $(cat "$DIR/client.out")"
exec 7>&-
wait_exit "$SERVER_PID" 30 || fail "greeter server: $(cat "$DIR/greeter.out")"
[[ $(grep -c "^SayHello from pid $CLIENT uid $(id -u) name \"ci\"$" "$DIR/greeter.out") == 3 ]] \
    || fail "server output: $(cat "$DIR/greeter.out")"
[[ ! -e $SOCK ]] || fail "socket file left behind: $SOCK"
cat "$DIR/greeter.out"

echo "== axum_hello + curl --unix-socket"
SOCK=$DIR/hello.sock
start_server hello "$EX/axum_hello" "$SOCK"
exec 8> "$DIR/hello.in"
# Ready once it says so: the socket file appears at bind(2), before listen(2), and a connect
# in between is refused.
for ((i = 0; i < 600; i++)); do grep -q '^listening on ' "$DIR/hello.out" && break; sleep 0.05; done
[[ $(curl -sS --max-time 10 --unix-socket "$SOCK" http://localhost/) == hello ]] || fail "GET /"
curl -sS --max-time 10 --unix-socket "$SOCK" -o "$DIR/whoami.json" http://localhost/whoami &
CURL=$!
wait "$CURL" || fail "GET /whoami"
grep -q "^{\"pid\":$CURL,\"uid\":$(id -u),\"gid\":$(id -g),\"sid\":null}$" "$DIR/whoami.json" \
    || fail "whoami: $(cat "$DIR/whoami.json") (curl pid $CURL)"
cat "$DIR/whoami.json"
exec 8>&-
wait_exit "$SERVER_PID" 30 || fail "axum server: $(cat "$DIR/hello.out")"
[[ ! -e $SOCK ]] || fail "socket file left behind: $SOCK"
echo "http_examples: OK"
