#!/bin/sh
# cli_server.sh — `skipllama serve` driven by the official OpenAI client (the `openai` npm package,
# installed at test time into $BUILD/npm): models list, completions and chat completions, plain
# and streamed, give exactly the text `skipllama run` prints for the same prompt and seed (greedy
# and sampled); errors arrive as the client's own exception classes (400, 401). Then SIGTERM:
# the server exits 0. SKIPPED (77) when node/npm are missing or the package cannot be installed.
. tests/lib.sh
. tests/server/lib.sh
command -v node > /dev/null 2>&1 || skip "node is not installed"
NPM="$(pwd)/$B/npm"
if [ ! -f "$NPM/node_modules/openai/package.json" ]; then
    command -v npm > /dev/null 2>&1 || skip "npm is not installed (needed for the openai package)"
    mkdir -p "$NPM"
    npm install --no-audit --no-fund --no-save --prefix "$NPM" openai@6 > "$NPM/install.log" 2>&1 ||
        skip "npm could not install the openai package (offline?): $(tail -n 1 "$NPM/install.log")"
fi
echo "ok openai $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$NPM/node_modules/openai/package.json") installed in $NPM"

trap 'kill -KILL "$SRV_PID" 2> /dev/null; rm -rf "$T"' EXIT
M=tests/data/tiny-silu.gguf
PROMPT="It was a dark and stormy night"
# what `skipllama run` prints (its output ends with one newline, dropped here)
"$SL" run -m $M -p "$PROMPT" -n 24 --temp 0 -t 1 --no-display-prompt 2> /dev/null | head -c -1 > "$T/greedy.txt"
"$SL" run -m $M -p "$PROMPT" -n 24 --temp 0.9 --top-k 0 --top-p 1 --min-p 0 --seed 7 -t 1 --no-display-prompt 2> /dev/null | head -c -1 > "$T/sampled.txt"
printf 'Call me Ishmael.' > "$T/chat_user.txt"
# the model has no chat template: the server lays the message out as ChatML
printf '<|im_start|>user\nCall me Ishmael.<|im_end|>\n<|im_start|>assistant\n' > "$T/chat_prompt.txt"
"$SL" run -m $M -f "$T/chat_prompt.txt" -n 20 --temp 0 -t 1 --no-display-prompt 2> /dev/null | head -c -1 > "$T/chat.txt"

if ! start_server "$T/server.log" -m $M -np 2 -t 1 --api-key test-key-123; then
    echo "not ok the server started"; cat "$T/server.log"; exit 1
fi
echo "ok the server listens on port $SRV_PORT"
node tests/server/openai_client.mjs "$NPM" "$SRV_PORT" "$T"
rc=$?
stop_server
if [ "$SRV_RC" -eq 0 ] && grep -q "all requests answered" "$T/server.log"; then echo "ok SIGTERM: the server drained and exited 0"
else echo "not ok SIGTERM: exit $SRV_RC"; tail -n 20 "$T/server.log"; rc=1; fi
exit $rc
