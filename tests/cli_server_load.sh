#!/bin/sh
# cli_server_load.sh — `skipllama serve` under load and faults, on loopback, bounded in count and
# time: 32 concurrent clients x 8 requests (tests/tools/http_load.c) mixing greedy completions
# (plain and streamed), chat streams, streams and requests the client abandons, malformed bodies
# and bodies over the 1 MiB cap. Every valid request must get exactly the text it gets alone (or
# 503 with Retry-After: 4 slots and a queue of 12 are too few for 32 clients), every malformed one
# 400 and every oversized one 413. Afterwards the server must be healthy (no slot left busy,
# /health ok, a completion answered as before) and exit 0 on SIGTERM — under `make asan` that run is the leak
# check too (LeakSanitizer fails the exit status).
. tests/lib.sh
. tests/server/lib.sh
trap 'kill -KILL "$SRV_PID" 2> /dev/null; rm -rf "$T"' EXIT
M=tests/data/tiny-silu.gguf
if ! start_server "$T/server.log" -m $M -np 4 --queue 12 -t 1 -c 128 --quiet; then
    echo "not ok the server started"; cat "$T/server.log"; exit 1
fi
echo "ok the server listens on port $SRV_PORT"
if timeout 600 "$B/tools/http_load" "$SRV_PORT" 32 8 21; then echo "ok load and faults"; else echo "not ok load and faults"; fails=$((fails + 1)); fi

stop_server
if [ "$SRV_RC" -eq 0 ] && ! grep -q "Sanitizer" "$T/server.log"; then echo "ok SIGTERM: exit 0, no sanitizer report"
else echo "not ok server exit $SRV_RC"; tail -n 40 "$T/server.log"; fails=$((fails + 1)); fi
[ $fails -eq 0 ]
