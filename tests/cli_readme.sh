#!/bin/sh
# The README cannot drift: every fenced code block of README.md is extracted and run, in order, as
# a newcomer would type it — in one shell session started in a scratch folder (with tests/,
# include/, build/ and python/ linked from the source tree, HOME pointing into the scratch folder,
# `skipllama` on PATH, `make` acting on this source tree and build folder):
#   ```sh          every command (a line, or lines joined by a trailing '\') must exit 0;
#   ```sh norun    its commands are listed as not run (e.g. `make test`, which is this suite);
#   ```c FILE      written to FILE (a later sh block compiles it);
#   ```python      run with python3 against this build (skipped, saying why, without numpy or
#                  under AddressSanitizer, whose library a Python process cannot load);
# any other block is an error, so a command cannot hide in a block the test does not read.
# Prints "ok ..." / "not ok ..." per command; exits 1 on any failure.
. tests/lib.sh
ROOT=$(pwd)
README=${README:-README.md}
[ -x "$B/skipllama" ] || { echo "not ok $B/skipllama missing (run make first)"; exit 1; }

mkdir -p "$T/work" "$T/home" "$T/bin" "$T/blocks"
for d in tests include python; do ln -s "$ROOT/$d" "$T/work/$d"; done
ln -s "$ROOT/$B" "$T/work/build"
ln -s "$ROOT/$B/skipllama" "$T/bin/skipllama"
ASAN=0
if command -v ldd > /dev/null 2>&1 && ldd "$B/skipllama" 2>/dev/null | grep -q libasan; then ASAN=1; fi
nm "$B/libskipllama.a" 2>/dev/null | grep -q __asan_report && ASAN=1

# ---- extract the blocks: $T/blocks/NNN.<kind> (+ .name for c blocks) ---------------------------
awk -v dir="$T/blocks" '
    /^```/ {
        if (!inblock) {
            inblock = 1; n++; info = substr($0, 4); gsub(/^[ \t]+|[ \t]+$/, "", info)
            file = sprintf("%s/%03d", dir, n); print info > (file ".info"); printf "" > (file ".body"); next
        }
        inblock = 0; next
    }
    inblock { print >> (file ".body") }
' "$README"
nblocks=$(ls "$T/blocks" | grep -c '\.info$')
[ "$nblocks" -gt 0 ] || { echo "not ok no code blocks found in $README"; exit 1; }

# ---- the session script: one shell, commands in README order ---------------------------------
S="$T/session.sh"
cat > "$S" << EOF
cd "$T/work" || exit 1
export HOME="$T/home" PATH="$T/bin:\$PATH" SKIPLLAMA_LIB="$ROOT/$B/libskipllama.so"
unset SKIPLLAMA_MODEL
make() { command make --no-print-directory -C "$ROOT" BUILD="$B" "\$@"; }
EOF
if [ $ASAN -eq 1 ]; then
    # the library was built with sanitizers: programs linked to it need their runtime too
    echo 'cc() { command cc -fsanitize=address,undefined "$@"; }' >> "$S"
fi
echo 'fails=0' >> "$S"
k=0
for info in "$T"/blocks/*.info; do
    base=${info%.info}
    body="$base.body"
    lang=$(cat "$info")
    case "$lang" in
    sh | "sh norun")
        # logical lines: join trailing backslashes, drop blank and comment-only lines
        awk '{ if (sub(/\\$/, "")) { acc = acc $0; next } print acc $0; acc = "" }' "$body" | grep -v '^[[:space:]]*\(#.*\)\{0,1\}$' > "$base.cmds"
        while IFS= read -r cmd; do
            k=$((k + 1))
            printf '%s\n' "$cmd" > "$T/cmd.$k"
            if [ "$lang" = "sh norun" ]; then
                echo "printf 'ok readme: not run (a norun block): %s # skip\n' \"\$(cat '$T/cmd.$k')\"" >> "$S"
                continue
            fi
            {
                echo "{"
                printf '%s\n' "$cmd"
                echo "} > '$T/out.$k' 2> '$T/err.$k' < /dev/null"
                echo "rc=\$?"
                echo "if [ \$rc -eq 0 ]; then printf 'ok readme: %s\n' \"\$(cat '$T/cmd.$k')\""
                echo "else printf 'not ok readme (exit %d): %s\n' \$rc \"\$(cat '$T/cmd.$k')\"; tail -n 15 '$T/err.$k' | sed 's/^/    /'; fails=\$((fails + 1)); fi"
            } >> "$S"
        done < "$base.cmds"
        ;;
    "c "*)
        name=${lang#c }
        case "$name" in */* | "") bad "README block $(basename "$base"): 'c $name' needs a plain file name"; continue ;; esac
        echo "cp '$body' '$T/work/$name'" >> "$S"
        ;;
    python)
        k=$((k + 1))
        if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
        if [ -z "$PY" ]; then echo "echo 'ok readme: python block # skipped: python3 is not installed'" >> "$S"
        elif ! "$PY" -c "import numpy" > /dev/null 2>&1; then echo "echo 'ok readme: python block # skipped: numpy is not installed'" >> "$S"
        elif [ $ASAN -eq 1 ]; then echo "echo 'ok readme: python block # skipped: the library is an AddressSanitizer build'" >> "$S"
        else
            {
                echo "PYTHONPATH='$ROOT/python' '$PY' '$body' > '$T/out.$k' 2>&1 < /dev/null"
                echo "rc=\$?"
                echo "if [ \$rc -eq 0 ]; then echo 'ok readme: python block ($(wc -l < "$body") lines)'"
                echo "else echo \"not ok readme: python block (exit \$rc)\"; tail -n 15 '$T/out.$k' | sed 's/^/    /'; fails=\$((fails + 1)); fi"
            } >> "$S"
        fi
        ;;
    *)
        bad "README block $(basename "$base") has the info string '$lang': use sh, 'sh norun', 'c FILE' or python, so the test knows what it holds"
        head -n 3 "$body" | sed 's/^/    /'
        ;;
    esac
done
echo 'exit $fails' >> "$S"

sh "$S"
session=$?
[ $session -eq 0 ] || fails=$((fails + session))
[ $k -gt 0 ] && ok "ran the commands of $nblocks README code blocks"

# the commands that generate text printed some on stdout
for i in $(seq 1 $k); do
    [ -f "$T/cmd.$i" ] || continue
    grep -q 'skipllama run .*-p "' "$T/cmd.$i" && [ -f "$T/out.$i" ] || continue
    prompt=$(sed -n 's/.*-p "\([^"]*\)".*/\1/p' "$T/cmd.$i")
    if [ "$(wc -c < "$T/out.$i")" -gt $((${#prompt} + 1)) ] && [ "$(head -c ${#prompt} "$T/out.$i")" = "$prompt" ]; then
        ok "readme: '$(cat "$T/cmd.$i" | cut -c1-60)...' echoed its prompt and generated text"
    else bad "no generated text from: $(cat "$T/cmd.$i")"; cat "$T/out.$i"; fi
done

# the command table lists every command `skipllama --help` lists (a row starting "| `CMD ")
missing=""
for c in $("$B/skipllama" --help 2>&1 | awk '/^commands:/ { f = 1; next } f && NF == 0 { exit } f { print $1 }'); do
    grep -q "^| \`$c[ \`]" "$README" || missing="$missing $c"
done
if [ -z "$missing" ]; then ok "README's command table has a row for every command of skipllama --help"
else bad "README's command table (## Commands) lacks a row for:$missing — add one ('| \`CMD OPTIONS\` | what it does |')"; fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
