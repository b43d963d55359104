#!/bin/sh
# CLI tests of what the commands do with files (cli/io.c, src/util/output.c):
#  outputs — a regular or missing -o target is written to a temporary file beside it and renamed
#  into place; a character device (as root: one made with mknod) or a FIFO is written in place and
#  stays what it was; a symbolic link's target is written and the link stays (saying so); a
#  directory is refused before any work; after a failed write (a file-size limit) or SIGINT in
#  the middle of one, no temporary file is left and an existing target is unchanged; new files
#  get the umask's permissions, replaced ones keep theirs;
#  inputs — `run -f /dev/zero` is refused after the 256 MiB stream limit with bounded memory
#  (peak RSS under 300 MiB; the time is printed, not judged), a regular file above the limit is
#  refused by its size before any of it is read, a directory is refused;
#  synth — refuses a model the disk cannot hold before writing; progress lines on a non-terminal
#  at most every 10 s (none for a short run).
# Prints "ok ..." / "not ok ..."; exits 1 on any failure.
. tests/lib.sh
MAXRSS=${MAXRSS:-$B/tools/maxrss}
ASAN=0
nm "$B/libskipllama.a" 2>/dev/null | grep -q __asan_report && ASAN=1
no_temps() { [ -z "$(find "$1" -name '*.tmp' 2>/dev/null)" ]; }

"$SL" synth --shape tiny --seed 5 -o "$T/ref.gguf" 2> /dev/null || bad "synth reference"

# ---- outputs ---------------------------------------------------------------------------------
if "$SL" synth --shape tiny --seed 5 -o /dev/null 2> "$T/err" && [ -c /dev/null ]; then ok "-o /dev/null: written in place, still a character device"
else bad "-o /dev/null"; cat "$T/err"; fi
if [ "$(id -u)" = 0 ] && mknod "$T/chr" c 1 3 2> /dev/null; then
    "$SL" synth --shape tiny -o "$T/chr" 2> "$T/err" && "$SL" logits --ids 1,2 -o "$T/chr" 2>> "$T/err"
    if [ -c "$T/chr" ] && no_temps "$T"; then ok "as root, -o onto a character device (mknod c 1 3) leaves it a character device"
    else bad "-o onto a character device as root: $(ls -l "$T/chr")"; cat "$T/err"; fi
else ok "as root, -o onto a character device # skip: not root (or mknod refused)"; fi

mkfifo "$T/fifo"
cat "$T/fifo" > "$T/from-fifo" &
reader=$!
if "$SL" synth --shape tiny --seed 5 -o "$T/fifo" 2> "$T/err" && wait $reader && cmp -s "$T/from-fifo" "$T/ref.gguf" && [ -p "$T/fifo" ]; then
    ok "-o onto a FIFO: written in place (the reader gets the same bytes), still a FIFO"
else bad "-o onto a FIFO"; cat "$T/err"; fi

mkdir "$T/links"
ln -s target.gguf "$T/links/link.gguf"
if "$SL" synth --shape tiny --seed 5 -o "$T/links/link.gguf" 2> "$T/err" && [ -L "$T/links/link.gguf" ] && cmp -s "$T/links/target.gguf" "$T/ref.gguf" &&
    grep -q "symbolic link to 'target.gguf'" "$T/err"; then
    ok "-o onto a dangling symlink: its target is created, the link stays, and it says so"
else bad "-o onto a dangling symlink"; cat "$T/err"; ls -l "$T/links"; fi
if "$SL" synth --shape tiny --seed 6 -o "$T/links/link.gguf" 2> "$T/err" && [ -L "$T/links/link.gguf" ] && ! cmp -s "$T/links/target.gguf" "$T/ref.gguf" &&
    grep -q "is a symbolic link: writing its target" "$T/err" && no_temps "$T/links"; then
    ok "-o onto a symlink: the target is replaced, the link stays ($(grep note "$T/err" | cut -c1-90)...)"
else bad "-o onto a symlink"; cat "$T/err"; fi

mkdir "$T/dir"
"$SL" calibrate -f tests/data/train-slice.txt -o "$T/dir" > /dev/null 2> "$T/err"
if [ $? -eq 1 ] && grep -q "'$T/dir' is a directory" "$T/err" && [ -d "$T/dir" ]; then ok "-o DIR is refused before calibrating: $(cat "$T/err")"
else bad "-o DIR"; cat "$T/err"; fi
"$SL" synth --shape tiny -o "$T/nofolder/x.gguf" 2> "$T/err"
if [ $? -eq 1 ] && grep -q "folder '$T/nofolder' does not exist" "$T/err"; then ok "-o into a missing folder is refused"; else bad "missing folder"; cat "$T/err"; fi

# permissions: new files follow the umask; a replaced file keeps its mode
(umask 027 && "$SL" synth --shape tiny -o "$T/perm.gguf" 2> /dev/null)
m1=$(stat -c %a "$T/perm.gguf")
chmod 604 "$T/perm.gguf"
"$SL" synth --shape tiny --seed 9 -o "$T/perm.gguf" 2> /dev/null
m2=$(stat -c %a "$T/perm.gguf")
if [ "$m1" = 640 ] && [ "$m2" = 604 ]; then ok "a new file gets 0666 & ~umask (640 under umask 027); a replaced one keeps its mode (604)"
else bad "permissions: new $m1 (want 640), replaced $m2 (want 604)"; fi

# a write that fails (a 200 KiB file-size limit; SIGXFSZ ignored so write() fails with EFBIG)
cp "$T/ref.gguf" "$T/keep.gguf"
(trap '' XFSZ; ulimit -f 200 && "$SL" synth --shape tiny --seed 7 -o "$T/keep.gguf") > /dev/null 2> "$T/err"
rc=$?
if [ $rc -eq 1 ] && cmp -s "$T/keep.gguf" "$T/ref.gguf" && no_temps "$T"; then
    ok "a failed write (file-size limit) exits 1, leaves the old file as it was and no temporary ($(tail -n 1 "$T/err"))"
else bad "failed write: exit $rc"; cat "$T/err"; ls "$T"; fi

# SIGINT / SIGTERM in the middle of a write: stop the process as soon as its temporary appears,
# then signal it (a model of ~190 MB: it cannot finish in between). maxrss starts it with SIGINT
# at its default action, which a shell's background job would have ignored.
for sig in INT TERM; do
    cp "$T/ref.gguf" "$T/big.gguf"
    rm -f "$T/pid"
    MAXRSS_PIDFILE="$T/pid" "$MAXRSS" "$SL" synth --dim 2048 --ff 5632 --layers 4 --heads 32 --vocab 32000 --type q4_0 -t 1 -q \
        -o "$T/big.gguf" 2> "$T/err" &
    wrapper=$!
    i=0
    while [ $i -lt 3000 ] && ! ls "$T"/big.gguf.*.tmp > /dev/null 2>&1 && kill -0 $wrapper 2> /dev/null; do sleep 0.01; i=$((i + 1)); done
    pid=$(cat "$T/pid" 2> /dev/null)
    had_temp=0
    if [ -n "$pid" ]; then
        kill -STOP "$pid" 2> /dev/null
        ls "$T"/big.gguf.*.tmp > /dev/null 2>&1 && had_temp=1
        kill -$sig "$pid" 2> /dev/null
        kill -CONT "$pid" 2> /dev/null
    fi
    wait $wrapper
    rc=$?
    case $sig in INT) want=130 ;; *) want=143 ;; esac
    if [ $had_temp -eq 1 ] && [ $rc -eq $want ] && no_temps "$T" && cmp -s "$T/big.gguf" "$T/ref.gguf"; then
        ok "SIG$sig while writing: killed by the signal (exit $rc), its temporary removed, the old file unchanged"
    else bad "SIG$sig while writing: temp seen $had_temp, exit $rc (want $want)"; cat "$T/err"; ls -la "$T"; fi
done
rm -f "$T/big.gguf"

# ---- inputs ----------------------------------------------------------------------------------
if [ -x "$MAXRSS" ]; then
    "$MAXRSS" "$SL" run -f /dev/zero > /dev/null 2> "$T/err"
    rc=$?
    rss=$(sed -n 's/.*maxrss_mib=\([0-9.]*\).*/\1/p' "$T/err")
    secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$T/err")
    if [ $rc -eq 1 ] && grep -q "'/dev/zero' goes on past 256 MiB" "$T/err" &&
        { [ $ASAN -eq 1 ] || awk -v r="$rss" 'BEGIN { exit !(r < 300) }'; }; then
        ok "run -f /dev/zero: refused at the 256 MiB stream limit, exit 1, peak RSS $rss MiB (limit 300$([ $ASAN -eq 1 ] && echo ', not checked under ASan')), $secs s"
    else bad "run -f /dev/zero: exit $rc, RSS $rss MiB"; cat "$T/err"; fi
else bad "$MAXRSS missing (make builds it)"; fi
truncate -s 2G "$T/huge.txt"
"$SL" tokenize -f "$T/huge.txt" > /dev/null 2> "$T/err"
if [ $? -eq 1 ] && grep -q "is 2.0 GiB; this command reads at most 1.0 GiB" "$T/err"; then ok "a 2 GiB (sparse) file is refused by its size, unread"
else bad "huge file"; cat "$T/err"; fi
"$SL" run -f "$T/dir" > /dev/null 2> "$T/err"
if [ $? -eq 1 ] && grep -q "is a directory" "$T/err"; then ok "run -f DIR is refused"; else bad "run -f DIR"; cat "$T/err"; fi
printf 'It was a dark' | "$SL" run -f - -n 4 --temp 0 > "$T/out" 2> /dev/null && [ -s "$T/out" ] && ok "run -f - reads standard input" || bad "run -f -"

# ---- synth: room checked before writing, progress -------------------------------------------
"$SL" synth --dim 65536 --ff 262144 --layers 4096 --heads 64 --vocab 1000000 -t 1 -o "$T/absurd.gguf" > /dev/null 2> "$T/err"
if [ $? -eq 1 ] && grep -q "on disk, but only .* is free" "$T/err" && [ ! -e "$T/absurd.gguf" ] && no_temps "$T"; then
    ok "synth of an absurd size is refused before writing: $(cat "$T/err")"
else bad "absurd synth"; cat "$T/err"; ls -la "$T" | head; fi
"$SL" synth --shape tiny -o "$T/p.gguf" 2> "$T/err"
if [ "$(grep -c '%' "$T/err")" -eq 0 ]; then ok "synth to a non-terminal: no progress lines for a run under 10 s"
else bad "progress lines on a non-terminal"; cat "$T/err"; fi
if command -v script > /dev/null 2>&1; then
    script -qec "$SL synth --shape tiny -o $T/p2.gguf" /dev/null > "$T/tty" 2>&1
    if grep -q "$(printf '\r')synth \[" "$T/tty" && grep -q "100.0%" "$T/tty"; then ok "synth on a terminal redraws one progress line (carriage returns, ends at 100.0%)"
    else bad "terminal progress"; od -c "$T/tty" | head; fi
else ok "progress on a terminal # skip: script(1) is not installed"; fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
