#!/bin/sh
# compare logits of old and new builds on every fixture
OLD=$1; NEW=$2; T=$(mktemp -d)
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('tests/data/tiny-silu.json'))['prompt_ids'])))")
fail=0
for m in tests/data/tiny-*.gguf; do
  for mode in "" "--incremental" "--kv-f16"; do
    for t in 1 2; do
      $OLD logits -m $m --ids $ids -o $T/a.f32 -t $t $mode 2>/dev/null; $NEW logits -m $m --ids $ids -o $T/b.f32 -t $t $mode 2>/dev/null
      if cmp -s $T/a.f32 $T/b.f32; then :; else echo "DIFF $m t=$t $mode"; fail=1; fi
    done
  done
done
# skip model: CATS calibration + ppl with the profile + sparse generation
for m in tests/data/tiny-silu.gguf tests/data/tiny-silu-q4_0.gguf tests/data/tiny-relu.gguf; do
  $OLD calibrate -m $m -f tests/data/train-slice.txt --sparsity 0.5 -o $T/a.skip.gguf >/dev/null 2>&1
  $NEW calibrate -m $m -f tests/data/train-slice.txt --sparsity 0.5 -o $T/b.skip.gguf >/dev/null 2>&1
  cmp -s $T/a.skip.gguf $T/b.skip.gguf || { echo "DIFF profile $m"; fail=1; }
  $OLD ppl -m $m -f tests/data/eval.txt --max-tokens 4000 --profile $T/a.skip.gguf 2>/dev/null | grep -v '^text\|^model\|^profile' > $T/a.txt
  $NEW ppl -m $m -f tests/data/eval.txt --max-tokens 4000 --profile $T/a.skip.gguf 2>/dev/null | grep -v '^text\|^model\|^profile' > $T/b.txt
  cmp -s $T/a.txt $T/b.txt || { echo "DIFF ppl $m"; cat $T/a.txt $T/b.txt; fail=1; }; tail -2 $T/b.txt
  $OLD run -m $m -p "It was a dark" -n 24 --temp 0 --profile $T/a.skip.gguf 2>/dev/null > $T/a.txt
  $NEW run -m $m -p "It was a dark" -n 24 --temp 0 --profile $T/a.skip.gguf 2>/dev/null > $T/b.txt
  cmp -s $T/a.txt $T/b.txt || { echo "DIFF run $m"; fail=1; }
done

rm -rf $T
[ $fail = 0 ] && echo "ALL IDENTICAL"
