#!/usr/bin/env bash
# scripts/test.d/fuzz.sh: the short fuzzing run of CI: every libFuzzer
# target for 10 s (fuzz/README.md).  scripts/test.sh runs it as the
# PostgreSQL user with WEBHOOK_SRC set to its temporary copy of the tree, so
# the targets are built there; run by hand, it uses the tree it belongs to.
# Works as root or as a normal user; FUZZ_SECONDS overrides the 10 s.
set -euo pipefail
tree=${WEBHOOK_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
FUZZ_SECONDS=${FUZZ_SECONDS:-10} exec bash "$tree/scripts/fuzz.sh"
