#!/usr/bin/env bash
# The README's test command. Installs what the tests need (Debian packages, npm packages), builds,
# checks types and lint, then runs the tests: unit tests first, then the VM tests one at a time.
#   --unit   only the unit tier (no VMs, no asset build)
set -euo pipefail
cd "$(dirname "$0")/.."
tiers=(unit vm)
[ "${1:-}" = "--unit" ] && tiers=(unit)

bash scripts/install-host-deps.sh
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
npm run -s build
npm run -s typecheck
node scripts/check-layers.mjs
npx biome check . >/dev/null || { npx biome check . ; exit 1; }

counts="$(mktemp)"
trap 'rm -f "$counts"' EXIT
status=0
for tier in "${tiers[@]}"; do
  mapfile -t files < <(find packages -path '*/node_modules' -prune -o -path "*/test/$tier/*" -name '*.test.ts' -print | sort)
  [ ${#files[@]} -eq 0 ] && continue
  # VM tests share the machine's two cores: one file at a time.
  concurrency=1; [ "$tier" = unit ] && concurrency=2
  echo "== $tier tests (${#files[@]} files) =="
  FCVM_TEST_COUNTS="$counts" node --import tsx --test --test-concurrency="$concurrency" \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=./scripts/summary-reporter.mjs --test-reporter-destination=stdout \
    "${files[@]}" || status=1
done
awk '{p+=$1; f+=$2; s+=$3} END {printf "%d passed, %d failed, %d skipped\n", p, f, s}' "$counts"
exit $status
