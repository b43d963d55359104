# lib.sh — shell helpers the server's CLI tests (tests/cli_server*.sh) source: start `skipllama
# serve` on a free loopback port and learn the port from its log, stop it with SIGTERM and get its
# exit status. Needs SL (the binary) set by the caller.

# start_server LOG [serve options...]: sets SRV_PID and SRV_PORT; returns 1 if it did not come up in 60 s
start_server() {
    _log=$1; shift
    : > "$_log"
    "$SL" serve --port 0 "$@" 2> "$_log" &
    SRV_PID=$!
    _i=0
    while [ $_i -lt 600 ]; do
        SRV_PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$_log" | head -n 1)
        [ -n "$SRV_PORT" ] && return 0
        kill -0 "$SRV_PID" 2> /dev/null || return 1
        sleep 0.1
        _i=$((_i + 1))
    done
    return 1
}

# stop_server: SIGTERM, wait (at most 60 s), then the server's exit status in SRV_RC
stop_server() {
    kill -TERM "$SRV_PID" 2> /dev/null
    _i=0
    while kill -0 "$SRV_PID" 2> /dev/null && [ $_i -lt 600 ]; do sleep 0.1; _i=$((_i + 1)); done
    if kill -0 "$SRV_PID" 2> /dev/null; then kill -KILL "$SRV_PID"; fi
    wait "$SRV_PID"
    SRV_RC=$?
}
