#!/usr/bin/env bash
# Served publish throughput in one run: avl serve's queue service against Redis Streams
# (Debian redis-server, appendonly with appendfsync always, XADD pipelined) and NATS
# JetStream (Debian nats-server, file storage), batches of 100 x 1 KiB from 4 producers
# over loopback. Installs the servers with apt-get when missing.
#
#   benches/queue-served/bench.sh [MESSAGES]      # default 200000 per system
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
messages="${1:-200000}"

if ! command -v redis-server >/dev/null || ! command -v nats-server >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server nats-server >/dev/null
fi
cargo build --release -q -p avl
cargo build --release -q --manifest-path "$HERE/Cargo.toml"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port="$(free_port)"
nats_port="$(free_port)"
avl_port="$(free_port)"
s3_port="$(free_port)"

mkdir -p "$work/redis" "$work/nats"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes \
    --appendfsync always --save '' --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
nats-server -js -sd "$work/nats" -a 127.0.0.1 -p "$nats_port" >"$work/nats.log" 2>&1 &
pids+=($!)
export AVL_ACCESS_KEY_ID=AKIAAVLBENCH00000001 AVL_SECRET_ACCESS_KEY=avl-bench-secret-0123456789
AVL_ROOT_ACCESS_KEY_ID="$AVL_ACCESS_KEY_ID" AVL_ROOT_SECRET_ACCESS_KEY="$AVL_SECRET_ACCESS_KEY" \
AVL_LOG=warn "$ROOT/target/release/avl" serve --data-dir "$work/avl" \
    --listen "127.0.0.1:$avl_port" --s3-listen "127.0.0.1:$s3_port" >"$work/avl.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    if grep -q "S3 listening" "$work/avl.out" 2>/dev/null \
        && redis-cli -p "$redis_port" ping >/dev/null 2>&1 \
        && grep -q "Server is ready" "$work/nats.log" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
"$HERE/target/release/avl-queue-served-bench" --avl "http://127.0.0.1:$avl_port" \
    --redis "$redis_port" --nats "nats://127.0.0.1:$nats_port" --messages "$messages"
