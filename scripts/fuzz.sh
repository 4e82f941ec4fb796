#!/usr/bin/env bash
# Fuzzes peft4j's parsers longer than the suite does (issue 17). Two kinds:
#   scripts/fuzz.sh jazzer MODULE TARGET    coverage-guided, Jazzer (libFuzzer) for the target's maxDuration (60 s);
#                                           run it again to go on: the corpus grows in MODULE/.cifuzz-corpus/
#   scripts/fuzz.sh mutate MODULE [INPUTS]  every mutation target of MODULE (testkit Fuzz) with INPUTS inputs each
#                                           (default 100000) and a fresh seed; prints inputs/s per target
# MODULE.TARGET: formats safetensors|shardedIndex|gguf, model config|adapter, tokenizer tokenizerJson|tokenizerModel,
# template chatTemplate, train datasetRows|trainYaml, serve request. A failing input is written to
# MODULE/target/fuzz-crashes/TARGET/ (mutate) or MODULE/.cifuzz-corpus/../crash-* (Jazzer); keep it as a regression
# seed by copying it into the target's ...FuzzTestInputs/TARGET/ folder under MODULE/src/test/resources.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/java25.sh"
cd "$ROOT"
kind="${1:-}"; module="${2:-}"
class_of() {
  case "$1" in
    formats) echo FormatsFuzzTest ;; model) echo ModelFuzzTest ;; tokenizer) echo TokenizerFuzzTest ;;
    template) echo TemplateFuzzTest ;; train) echo TrainFuzzTest ;; serve) echo ServeFuzzTest ;;
    *) echo "unknown module '$1': formats, model, tokenizer, template, train or serve" >&2; exit 2 ;;
  esac
}
case "$kind" in
  jazzer)
    target="${3:?usage: scripts/fuzz.sh jazzer MODULE TARGET}"
    JAZZER_FUZZ=1 exec ./mvnw -B -o test -pl "$module" -am -Dsurefire.failIfNoSpecifiedTests=false \
      -Dsurefire.excludedGroups=bench -Dtest="$(class_of "$module")#$target" ;;
  mutate)
    [ -n "$module" ] || { echo "usage: scripts/fuzz.sh mutate MODULE [INPUTS]" >&2; exit 2; }
    exec ./mvnw -B -o test -pl "$module" -am -Dsurefire.failIfNoSpecifiedTests=false \
      -Dtest="$(class_of "$module")#*Mutated" -Dpeft4j.fuzz.inputs="${3:-100000}" -Dpeft4j.fuzz.seed="$RANDOM" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
