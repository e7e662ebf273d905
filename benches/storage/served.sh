#!/usr/bin/env bash
# The S3 front over HTTP on loopback, in one run:
# - GET of a 64 MiB object: `avl serve` against nginx serving the same bytes as a file
#   (bar: at least 0.7x nginx's speed);
# - the server's resident memory through a PUT and a GET of 1 GiB (bar: it grows by less
#   than 64 MiB).
# Needs curl, and nginx (installed with apt-get when missing). Usage:
#   benches/storage/served.sh [ROUNDS]     # default 15 GETs of each, alternating
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-15}"

command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx >/dev/null; }
cargo build --release -q -p avl
avl="$PWD/target/release/avl"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port="$(free_port)"
s3_port="$(free_port)"

mkdir -p "$work/www" "$work/nginx"
# nginx's workers run as another user: they need to read the file.
chmod 755 "$work" "$work/www"
head -c $((64 << 20)) /dev/urandom >"$work/www/object.bin"
cat >"$work/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
    }
}
CONF
nginx -c "$work/nginx.conf" -p "$work/nginx" &
pids+=($!)

AVL_LOG=warn "$avl" serve --no-auth --data-dir "$work/data" --listen 127.0.0.1:0 \
    --s3-listen "127.0.0.1:$s3_port" >"$work/avl.out" 2>"$work/avl.err" &
avl_pid=$!
pids+=($avl_pid)
for _ in $(seq 100); do
    grep -q "S3 listening" "$work/avl.out" 2>/dev/null && break
    sleep 0.1
done
s3="http://127.0.0.1:$s3_port"
curl -sf -X PUT "$s3/bench" >/dev/null
curl -sf -T "$work/www/object.bin" "$s3/bench/object.bin" >/dev/null

get() { curl -sf -o /dev/null -w '%{time_total}\n' "$1"; }
cmp <(curl -sf "$s3/bench/object.bin") "$work/www/object.bin"
cmp <(curl -sf "http://127.0.0.1:$nginx_port/object.bin") "$work/www/object.bin"
for _ in 1 2 3; do get "$s3/bench/object.bin" >/dev/null; get "http://127.0.0.1:$nginx_port/object.bin" >/dev/null; done
: >"$work/nginx.times"
: >"$work/avl.times"
for _ in $(seq "$rounds"); do
    get "http://127.0.0.1:$nginx_port/object.bin" >>"$work/nginx.times"
    get "$s3/bench/object.bin" >>"$work/avl.times"
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
n="$(median "$work/nginx.times")"
a="$(median "$work/avl.times")"
python3 - "$n" "$a" <<'PY'
import sys
n, a = map(float, sys.argv[1:])
mib = 64
print(f"GET 64 MiB, median of the rounds: nginx {n*1000:.1f} ms ({mib/n:.0f} MiB/s), "
      f"avl {a*1000:.1f} ms ({mib/a:.0f} MiB/s): {n/a:.2f}x nginx")
PY

rss() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
head -c $((1 << 30)) /dev/urandom >"$work/big.bin"
before="$(rss "$avl_pid" VmRSS)"
curl -sf -T "$work/big.bin" "$s3/bench/big.bin" >/dev/null
after_put="$(rss "$avl_pid" VmHWM)"
curl -sf -o /dev/null "$s3/bench/big.bin"
after_get="$(rss "$avl_pid" VmHWM)"
echo "memory: resident ${before} KiB before; peak $((after_put / 1024)) MiB after a 1 GiB PUT" \
    "(+$(((after_put - before) / 1024)) MiB), $((after_get / 1024)) MiB after its GET" \
    "(+$(((after_get - before) / 1024)) MiB)"
