#!/bin/sh
# CLI tests of the option module (cli/opts.c): every subcommand's --help is generated from its
# table; the shared flags (-m -p -f -o -c -t -b -n -s -P --sparsity -q) have the same spelling,
# range and default wherever they appear (the "subcommand x shared flag" table is printed); range
# messages state the accepted range exactly; old spellings still work (--ctx, --batch, synth -t
# TYPE, bench-op -t TYPES, profile show -p), the deprecated ones with a note; -t defaults to the
# physical cores. Prints "ok ..." / "not ok ..."; exits 1 on any failure.
. tests/lib.sh
M=tests/data/tiny-silu.gguf

# expect_msg NAME WANT CMD...: must exit 1..127 and stderr must contain WANT
expect_msg() {
    name=$1; want=$2; shift 2
    "$@" > "$T/out" 2> "$T/err"; rc=$?
    if [ $rc -ge 1 ] && [ $rc -lt 128 ] && grep -qF -- "$want" "$T/err"; then ok "$name"
    else bad "$name (exit $rc)"; echo "  want: $want"; echo "  got:  $(cat "$T/err")"; fi
}

# ---- every subcommand: generated --help ------------------------------------------------------
# every command `skipllama --help` lists (so a new command is checked without editing this file); a
# command with subcommands (its --help lists "usage: skipllama C SUB ...") is checked per subcommand
CMDS=""
for c in $("$SL" --help 2>&1 | awk '/^commands:/ { f = 1; next } f && NF == 0 { exit } f { print $1 }'); do
    subs=$("$SL" "$c" --help 2>/dev/null | sed -n "s/^\(usage:\)\{0,1\} *skipllama $c \([a-z][a-z-]*\) .*/\2/p" | sort -u)
    if [ -n "$subs" ] && [ "$(echo "$subs" | wc -l)" -gt 1 ]; then
        for s in $subs; do CMDS="$CMDS $c:$s"; done
    else CMDS="$CMDS $c"; fi
done
n_cmds=$(echo $CMDS | wc -w)
[ "$n_cmds" -ge 15 ] && ok "skipllama --help lists $n_cmds commands" || bad "skipllama --help lists $n_cmds commands (want >= 15)"
for cc in $CMDS; do
    c=$(echo "$cc" | tr ':' ' ')
    f="$T/help-$(echo "$c" | tr ' ' '_')"
    # shellcheck disable=SC2086
    if "$SL" $c --help > "$f" 2> "$T/err" && grep -q "^usage: skipllama $c " "$f" && grep -q "^  -h, --help " "$f"; then :
    else bad "$c --help"; cat "$T/err"; fi
done
ok "every subcommand prints a generated --help (usage line, options, -h)"

# ---- the shared flags agree ------------------------------------------------------------------
# flag | help-line prefix | what its line must contain (spelling, range, default) in every command:
# fixed strings, several joined by "&&"
cat > "$T/shared" << 'EOF'
-m|  -m, --model FILE |FILE
-p|  -p, --prompt TEXT |TEXT
-f|  -f, --file FILE |FILE
-o|  -o, --output FILE |FILE
-c|  -c, --ctx-size N |([0, 4194304]; default &&; also --ctx)
-t|  -t, --threads N |([1, 512]; default the physical cores, && here)
-b|  -b, --batch-size N |([1, 65536]; default 64; also --batch)
-n|  -n, --n-predict N |([-1, 1073741824]
-s|  -s, --seed N |(>= 0; default
-P|  -P, --profile FILE |FILE
--sparsity|      --sparsity S|([0, 1)
-q|  -q, --quiet |
EOF
# llama-bench's meanings, kept on purpose: bench -p/-n (row lengths), -o (md|json), -t/-b lists
EXCEPT="bench:-p bench:-n bench:-o bench:-t bench-op:-o bench-op:-t bench-op:-b"
printf '%-16s' "command" > "$T/table"
while IFS='|' read -r flag prefix want; do printf ' %-10s' "$flag" >> "$T/table"; done < "$T/shared"
echo >> "$T/table"
for cc in $CMDS; do
    c=$(echo "$cc" | tr ':' ' ')
    f="$T/help-$(echo "$c" | tr ' ' '_')"
    printf '%-16s' "$c" >> "$T/table"
    while IFS='|' read -r flag prefix want; do
        line=$(grep -F -- "$prefix" "$f" | head -1)
        cell="."
        case " $EXCEPT " in
        *" $c:$flag "*)
            if grep -q -- "^  $flag, " "$f"; then cell="llama-bench"; fi ;;
        *)
            if [ -n "$line" ]; then
                cell="same"
                rest=$want
                while [ -n "$rest" ]; do
                    part=${rest%%&&*}
                    case "$rest" in *"&&"*) rest=${rest#*&&} ;; *) rest="" ;; esac
                    echo "$line" | grep -qF -- "$part" || { cell="DIFFERS"; bad "$c $flag: '$line' lacks '$part'"; }
                done
            elif grep -q -- "^  $flag [A-Z]* *(deprecated)" "$f"; then
                cell="deprecated"
            elif grep -q -- "^  $flag[, ]" "$f" || grep -q -- "^      $flag " "$f"; then
                cell="DIFFERS"; bad "$c uses $flag with another meaning: $(grep -- "^  $flag" "$f")"
            fi ;;
        esac
        printf ' %-10s' "$cell" >> "$T/table"
    done < "$T/shared"
    echo >> "$T/table"
done
cat "$T/table"
grep -q DIFFERS "$T/table" || ok "shared flags: one spelling, range and default in every subcommand (table above)"

# ---- exact range messages, the same in every command -----------------------------------------
for c in run ppl calibrate logits train-predictor quantize chat convert; do
    expect_msg "$c -t 0: exact range" "skipllama $c: -t/--threads must be an integer in [1, 512], not '0'" "$SL" $c -t 0
done
expect_msg "synth -t 0: exact range" "skipllama synth: -t/--threads must be an integer in [1, 512] (" "$SL" synth -t 0
expect_msg "bench -t 1,0: exact list range" "-t/--threads must be a comma-separated list of up to 64 integers in [1, 512], not '1,0'" "$SL" bench -t 1,0
expect_msg "--sparsity 1 is outside [0, 1)" "--sparsity must be a number in [0, 1), not '1'" "$SL" run -p x --sparsity 1
expect_msg "--sparsity 0.9999 is accepted (then needs a profile)" "--sparsity needs --profile" "$SL" run -p x --sparsity 0.9999
expect_msg "--sparsity 0.99999999 rounds to 1 in float: refused" "not '0.99999999'" "$SL" ppl -m $M -f tests/data/eval.txt --sparsity 0.99999999
expect_msg "--top-p 2: [0, 1]" "--top-p must be a number in [0, 1], not '2'" "$SL" run -p x --top-p 2
expect_msg "-c -1" "-c/--ctx-size must be an integer in [0, 4194304], not '-1'" "$SL" run -p x -c -1
expect_msg "-b 0" "-b/--batch-size must be an integer in [1, 65536], not '0'" "$SL" logits -m $M --ids 1 -o "$T/x" -b 0
expect_msg "--seed -1" "-s/--seed must be an integer >= 0, not '-1'" "$SL" run -p x --seed -1
expect_msg "bench -o csv" "-o/--output must be one of md, json, not 'csv'" "$SL" bench -o csv
expect_msg "unknown option with a suggestion" "unknown option '--tmep' (did you mean --temp?" "$SL" run -p x --tmep 1
expect_msg "missing value" "-m/--model needs a value (FILE)" "$SL" info -m
expect_msg "a flag given a value" "--json takes no value" "$SL" ppl --json=1
expect_msg "synth -t: both meanings in the message" "-t/--threads must be an integer in [1, 512] (or, in its older meaning, TYPE one of f32" \
    "$SL" synth --shape tiny -t q7_k -o "$T/x.gguf"
expect_msg "too many positional arguments" "too many arguments" "$SL" quantize a b c d

# ---- old spellings -------------------------------------------------------------------------
a=$("$SL" ppl -m $M -f tests/data/eval.txt --max-tokens 200 -c 64 -q 2>&1)
b=$("$SL" ppl -m $M -f tests/data/eval.txt --max-tokens 200 --ctx 64 -q 2>&1)
c=$("$SL" ppl -m $M -f tests/data/eval.txt --max-tokens 200 --ctx-size=64 --quiet 2>&1)
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] && echo "$a" | grep -q "windows of 64"; then ok "ppl: -c 64 == --ctx 64 == --ctx-size=64"
else bad "ppl ctx spellings"; echo "$a"; echo "$b"; echo "$c"; fi
"$SL" logits -m $M --ids 1,2,3 -o "$T/a.f32" -b 2 && "$SL" logits -m $M --ids 1,2,3 -o "$T/b.f32" --batch 2 &&
    cmp -s "$T/a.f32" "$T/b.f32" && ok "logits: --batch is -b" || bad "logits --batch"
"$SL" synth --shape tiny --type q8_0 --seed 3 -o "$T/s1.gguf" 2> /dev/null
"$SL" synth --shape tiny -t q8_0 --seed 3 -o "$T/s2.gguf" 2> "$T/err"
if cmp -s "$T/s1.gguf" "$T/s2.gguf" && grep -q "note: -t q8_0: -t TYPE is the old spelling of --type" "$T/err"; then
    ok "synth -t TYPE still works, with a deprecation note"
else bad "synth -t TYPE"; cat "$T/err"; fi
"$SL" calibrate -m $M -f tests/data/train-slice.txt --max-tokens 256 -c 64 -q -o "$T/p.gguf" > /dev/null 2>&1
"$SL" profile show -m $M -P "$T/p.gguf" > "$T/show1" 2> /dev/null
"$SL" profile show -m $M -p "$T/p.gguf" > "$T/show2" 2> "$T/err"
if [ -s "$T/show1" ] && cmp -s "$T/show1" "$T/show2" && grep -q "note: -p .*old spelling of -P/--profile" "$T/err"; then
    ok "profile show -p still works, with a deprecation note; -P is the profile"
else bad "profile show -p"; cat "$T/err"; fi
if "$SL" bench-op --shape 64,128 -t q8_0 --fractions 1 -b 1 -r 1 --layers 1 > "$T/bo" 2> "$T/err" &&
    grep -q "note: -t q8_0" "$T/err" && grep -q "| 64,128 q8_0 B=1 t=" "$T/bo" && ! grep -qi "fail\|acceptance" "$T/bo"; then
    ok "bench-op -t TYPES still works (note); no acceptance verdicts in its output"
else bad "bench-op -t TYPES"; cat "$T/err" "$T/bo"; fi
if "$SL" detokenize -m $M --ids 1,985 --special > "$T/d1" && "$SL" detokenize -m $M 1 985 --special > "$T/d2" && cmp -s "$T/d1" "$T/d2"; then
    ok "detokenize --ids LIST == positional ids"
else bad "detokenize --ids"; fi

# ---- -t defaults to the physical cores of the CPUs this process may use ----------------------
allowed=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)
cores=$(echo "$allowed" | tr ',' '\n' | awk -F- '{ hi = NF > 1 ? $2 : $1; for (c = $1; c <= hi; c++) print c }' | while read -r cpu; do
    d=/sys/devices/system/cpu/cpu$cpu/topology
    [ -r $d/core_id ] && echo "$(cat $d/physical_package_id 2>/dev/null || echo 0):$(cat $d/die_id 2>/dev/null || echo 0):$(cat $d/core_id)"
done | sort -u | wc -l)
[ "$cores" -gt 0 ] || cores=$(nproc)
"$SL" run -p x -n 1 2> "$T/err" > /dev/null
if grep -q "threads = $cores," "$T/err"; then ok "run -t defaults to the physical cores ($cores)"
else bad "default threads (want $cores)"; cat "$T/err"; fi

[ $fails -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
