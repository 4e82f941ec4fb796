#!/usr/bin/env bash
# peft4j against PyTorch eager, side by side: runs `./peft4j bench train` and bench/python/torch_lora_bench.py
# alternately PAIRS times (a shared VM's speed drifts over minutes, so each pair is taken back to back), then prints a
# Markdown table with each run's tokens/s (median step), MFU, peak RSS, the pair's ratio and the median over pairs.
#
#   bench/pairs.sh [--model smollm2-135m] [--seq 512] [--threads 2] [--method lora] [--pairs 3] [--steps 5]
#                  [--torch-aten 1] [--torch-blas 2] [--torch-openblas-timeout ""]
#
# PyTorch needs Debian's python3-torch and libopenblas0-pthread (apt-get install python3-torch libopenblas0-pthread);
# it runs with glibc told to keep freed memory (see the script's docstring). --torch-openblas-timeout N runs it with
# OPENBLAS_THREAD_TIMEOUT=N (peft4j sets 16 for its own OpenBLAS), to check that this setting is not what decides.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model=smollm2-135m seq=512 threads=2 method=lora pairs=3 steps=5 aten=1 blas="" timeout=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --method) method="$2"; shift 2 ;;
    --pairs) pairs="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --torch-aten) aten="$2"; shift 2 ;;
    --torch-blas) blas="$2"; shift 2 ;;
    --torch-openblas-timeout) timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "pairs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
blas="${blas:-$threads}"
PY=/usr/bin/python3
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "pairs.sh: $PY cannot import torch; install it with: apt-get install python3-torch libopenblas0-pthread" >&2
  exit 1
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$ROOT/peft4j" --version >/dev/null   # builds the CLI once, outside the timed runs; the launcher plans the heap of each run
# keeps the one result line of a run; on failure shows what the run printed and stops
result() {  # result NAME FILE
  if ! grep ' tok/s ' "$2.log" > "$2"; then
    echo "pairs.sh: the $1 run printed no result; its output:" >&2
    tail -20 "$2.log" >&2
    exit 1
  fi
}
for i in $(seq 1 "$pairs"); do
  "$ROOT/peft4j" bench train --model-config "$model" --seq "$seq" --threads "$threads" \
    --method "$method" --steps "$steps" > "$out/p$i.log" 2>&1 || true
  result peft4j "$out/p$i"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${timeout:+OPENBLAS_THREAD_TIMEOUT=$timeout} \
    MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 \
    "$PY" "$ROOT/bench/python/torch_lora_bench.py" --model "$model" --seq "$seq" --method "$method" \
    --blas-threads "$blas" --aten-threads "$aten" --warmup 2 --steps "$steps" > "$out/t$i.log" 2>&1 || true
  result PyTorch "$out/t$i"
  echo "pair $i: peft4j $(grep -o '[0-9.]* tok/s' "$out/p$i"), torch $(grep -o '[0-9.]* tok/s' "$out/t$i")" >&2
done
"$PY" - "$out" "$pairs" "$model" "$method" "$seq" "$threads" "$aten" "$blas" "${timeout:-default}" <<'EOF'
import re, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
model, method, seq, threads, aten, blas, timeout = sys.argv[3:10]
num = lambda pat, s: float(re.search(pat, s).group(1))
rows = []
for i in range(1, pairs + 1):
    p, t = open(f"{out}/p{i}").read(), open(f"{out}/t{i}").read()
    rows.append(dict(p=num(r"([0-9.]+) tok/s", p), mfu=num(r"MFU +([0-9.]+)%", p), prss=num(r"peak RSS +([0-9.]+) GB", p),
                     t=num(r"([0-9.]+) tok/s", t), trss=num(r"peak RSS +([0-9.]+) GB", t)))
print(f"{model} {method}, seq {seq}, batch 1, {threads} threads; PyTorch: OpenBLAS {blas} threads, ATen {aten}, "
      f"OPENBLAS_THREAD_TIMEOUT {timeout}\n")
print("| pair | peft4j tok/s | MFU | peak RSS | PyTorch tok/s | peak RSS | ratio | RSS ratio |")
print("|---|---|---|---|---|---|---|---|")
for i, r in enumerate(rows, 1):
    print(f"| {i} | {r['p']:.1f} | {r['mfu']:.1f}% | {r['prss']:.2f} GB | {r['t']:.1f} | {r['trss']:.2f} GB | {r['p'] / r['t']:.2f}x | "
          f"{r['prss'] / r['trss']:.2f}x |")
med = lambda k: statistics.median(r[k] for r in rows)
print(f"| median | {med('p'):.1f} | {med('mfu'):.1f}% | {med('prss'):.2f} GB | {med('t'):.1f} | {med('trss'):.2f} GB | "
      f"{statistics.median(r['p'] / r['t'] for r in rows):.2f}x | {statistics.median(r['prss'] / r['trss'] for r in rows):.2f}x |")
EOF
