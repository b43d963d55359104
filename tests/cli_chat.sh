#!/bin/sh
# CLI tests of `skipllama chat` and `run --chat` on the bundled tiny model with a ChatML template
# (--chat-template: the model has none): greedy, so every reply is reproducible.
#  - KV reuse: the second turn reuses exactly the first turn's prompt and reply from the cache
#    and evaluates only its own new tokens; /clear empties the cache;
#  - the second answer is conditioned on the first: the reply to the same message differs with
#    and without the history before it, and equals the reply of `run --chat` when alone;
#  - in a real terminal (tmux send-keys / capture-pane): two turns typed at the "> " prompt, the
#    replies on screen, the per-turn report (skipped when tmux is missing);
#  - errors: unknown template names, a template of a family we do not render, --system without
#    --chat. Prints "ok ..." / "not ok ..."; exits 1 on any failure.
. tests/lib.sh
SL="$(pwd)/$B/skipllama"
M=tests/data/tiny-silu.gguf
SESSION="sl-chat-test-$$"
trap 'tmux kill-session -t "$SESSION" 2> /dev/null; rm -rf "$T"' EXIT
CHAT="$SL chat -m $M --chat-template chatml -n 12 --temp 0 -t 1"
Q1="Who is Sherlock Holmes?"
Q2="Why?"

# two turns, then the second question alone after /clear
printf '%s\n%s\n/clear\n%s\n/exit\nnever read\n' "$Q1" "$Q2" "$Q2" | $CHAT > "$T/out" 2> "$T/err"
rc=$?
turn() { grep "^\[turn" "$T/err" | sed -n "${1}p"; }
num() { echo "$1" | sed -n "s/.*[^0-9]\([0-9][0-9]*\) $2.*/\1/p" | head -n 1; }
t1=$(turn 1); t2=$(turn 2); t3=$(turn 3)
p1=$(num "$t1" "prompt tokens evaluated"); g1=$(num "$t1" "tokens generated"); k2=$(num "$t2" "reused"); p2=$(num "$t2" "prompt tokens evaluated")
p3=$(num "$t3" "prompt tokens evaluated"); k3=$(num "$t3" "reused")
if [ $rc -eq 0 ] && [ -n "$p1" ] && [ -n "$p2" ] && [ "$k2" = $((p1 + g1)) ] && [ "$p2" -gt 0 ] && [ "$(grep -c '^\[turn' "$T/err")" = 3 ]; then
    ok "turn 2 reuses turn 1's $p1 prompt + $g1 reply tokens from the KV cache and evaluates only $p2 new ones"
else bad "KV reuse (exit $rc): $t1 / $t2"; cat "$T/err"; fi
if [ "$k3" = 0 ] && grep -q "conversation cleared" "$T/err"; then ok "/clear empties the cache ($p3 tokens evaluated, 0 reused); /exit stops reading"
else bad "/clear: $t3"; fi
r1=$(sed -n 1p "$T/out"); r2=$(sed -n 2p "$T/out"); r3=$(sed -n 3p "$T/out")
if [ -n "$r2" ] && [ "$r2" != "$r3" ]; then ok "the second answer depends on the first turn ('$r2' vs '$r3' alone)"
else bad "second answer not conditioned: '$r2' vs '$r3'"; fi
alone=$("$SL" run -m $M --chat --chat-template chatml -n 12 --temp 0 -t 1 -p "$Q2" 2> /dev/null)
if [ "$alone" = "$r3" ]; then ok "run --chat gives the same reply as chat's first turn"
else bad "run --chat: '$alone' vs chat '$r3'"; fi
"$SL" run -m $M --chat --chat-template chatml -n 4 --temp 0 -t 1 -p "$Q1" --system "Be brief." --display-prompt > "$T/rp" 2> "$T/re"
if grep -q "^<|im_start|>system" "$T/rp" && grep -q "^Be brief.<|im_end|>" "$T/rp" && grep -q "chat template chatml" "$T/re"; then
    ok "run --chat --system --display-prompt shows the ChatML prompt"
else bad "run --chat --display-prompt"; cat "$T/rp" "$T/re"; fi

# a real terminal
if command -v tmux > /dev/null 2>&1; then
    tmux new-session -d -s "$SESSION" -x 160 -y 40 "$CHAT 2> $T/tty.err; sleep 30"
    wait_for() { # wait_for PATTERN FILE-or-pane
        i=0
        while [ $i -lt 100 ]; do
            if [ "$2" = pane ]; then tmux capture-pane -p -t "$SESSION" > "$T/pane" 2> /dev/null; f="$T/pane"; else f=$2; fi
            grep -q "$1" "$f" 2> /dev/null && return 0
            sleep 0.1; i=$((i + 1))
        done
        return 1
    }
    wait_for '^> ' pane
    tmux send-keys -t "$SESSION" "$Q1" Enter
    wait_for '^\[turn 1' "$T/tty.err"
    tmux send-keys -t "$SESSION" "$Q2" Enter
    wait_for '^\[turn 2' "$T/tty.err"
    tmux send-keys -t "$SESSION" "/exit" Enter
    sleep 0.3
    tmux capture-pane -p -t "$SESSION" > "$T/pane"
    if grep -q "^> $Q1" "$T/pane" && grep -q "^> $Q2" "$T/pane" && grep -qF "$r1" "$T/pane" && grep -qF "$r2" "$T/pane" &&
        grep -q "^\[turn 2: $p2 prompt tokens evaluated, $k2 reused" "$T/tty.err"; then
        ok "tmux: two turns typed at the prompt, both replies on screen, turn 2 evaluated $p2 tokens and reused $k2"
    else bad "tmux session"; cat "$T/pane"; cat "$T/tty.err"; fi
    tmux kill-session -t "$SESSION" 2> /dev/null
else
    ok "tmux session # skip tmux is not installed (Debian: apt-get install tmux)"
fi

expect_fail "chat with an unknown template name" "$SL" chat -m $M --chat-template nosuch
printf '{%% for m in messages %%}<|user|>{{ m.content }}<|endoftext|>{%% endfor %%}' > "$T/zephyr.jinja"
expect_fail "chat with a zephyr template (not rendered)" "$SL" chat -m $M --chat-template "$T/zephyr.jinja"
grep -q "zephyr" "$T/err" && ok "the message names the template family" || bad "message does not name zephyr: $(cat "$T/err")"
expect_fail "chat on a model without a chat template" "$SL" chat -m $M
expect_fail "run --system without --chat" "$SL" run -m $M -p hi --system x
echo "$fails failures"
[ $fails -eq 0 ]
