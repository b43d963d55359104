#!/bin/sh
# cli_server_page.sh — the chat page at / in a real browser: headless Chromium (Debian's
# `chromium`), driven by tests/server/page_check.mjs over the DevTools protocol, types a message,
# clicks Send and waits: the DOM must show the user's message and a reply that ended normally with
# its speed; a second reply is cut by the Stop button. The page must name no outside URL (it works
# offline). A screenshot goes to $BUILD/server-page.png. SKIPPED (77) without chromium or node.
. tests/lib.sh
. tests/server/lib.sh
CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
[ -n "$CHROMIUM" ] || skip "chromium is not installed (Debian package chromium)"
trap 'kill -KILL "$SRV_PID" 2> /dev/null; rm -rf "$T"' EXIT
if ! start_server "$T/server.log" -m tests/data/tiny-silu.gguf -np 2 -t 1 -c 4096; then
    echo "not ok the server started"; cat "$T/server.log"; exit 1
fi
command -v node > /dev/null 2>&1 || skip "node is not installed (it drives Chromium)"
if node tests/server/page_check.mjs "$CHROMIUM" "http://127.0.0.1:$SRV_PORT/" "$B/server-page.png"; then :; else fails=$((fails + 1)); fi
if grep -q 'POST /v1/chat/completions 200' "$T/server.log"; then echo "ok the page streamed from /v1/chat/completions"
else echo "not ok no chat request reached the server"; cat "$T/server.log"; fails=$((fails + 1)); fi
# nothing from elsewhere: the page names no http(s) URL at all
if ! "$SL" serve --help > /dev/null 2>&1 || grep -Eq 'https?://' src/server/page.html; then echo "not ok the page references an outside URL"; fails=$((fails + 1))
else echo "ok the page names no outside URL (works offline)"; fi
stop_server
[ "$SRV_RC" -eq 0 ] || { echo "not ok server exit $SRV_RC"; fails=$((fails + 1)); }
[ $fails -eq 0 ]
