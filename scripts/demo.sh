#!/usr/bin/env bash
# The demo: copies the bundled demo export (demo/1_netlicensing-assets.xml,
# made by scripts/make-demo.ts) into a fresh working directory demo-run/,
# imports it there and prints the import summary. Starting the agent on it
# follows below.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bun="$root/node_modules/.bin/bun"
run_dir="$root/demo-run"

rm -rf "$run_dir"
mkdir -p "$run_dir"
cp "$root"/demo/*_netlicensing-assets.xml "$run_dir/"
echo "== importing the demo export in $run_dir"
(cd "$run_dir" && "$bun" "$root/src/main.ts" --action=import-assets)
