#!/usr/bin/env bash
# The demo: copies the bundled demo export (demo/1_netlicensing-assets.xml, made
# by scripts/make-demo.ts: one licensee per licensing model) into a fresh
# working directory demo-run/, imports it there, starts the agent on it
# (127.0.0.1, port $PORT or 8080), shows a few validate calls a client would
# make, and keeps serving until Ctrl-C. DEMO_ONESHOT=1 stops after the calls
# (for scripts and CI).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bun="$root/node_modules/.bin/bun"
run_dir="$root/demo-run"
port="${PORT:-8080}"
api_key="0b9d2e7f-3a41-4c6b-8e5d-9f2a1c7b4e10" # vendor-wide demo API key (validate only)

rm -rf "$run_dir"
mkdir -p "$run_dir"
cp "$root"/demo/*_netlicensing-assets.xml "$run_dir/"
echo "== importing the demo export in $run_dir"
(cd "$run_dir" && "$bun" "$root/src/main.ts" --action=import-assets)

echo "== starting the agent: http://127.0.0.1:$port/rest/ (status page: http://127.0.0.1:8081/status)"
(cd "$run_dir" && exec "$bun" "$root/src/main.ts" --action=run-agent-offline --host=127.0.0.1 --port="$port") &
agent=$!
trap 'kill -TERM "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done

call() {
  local licensee="$1" body="$2"
  echo
  echo "\$ curl -u apiKey:$api_key -H 'Accept: application/json' -d '$body' http://127.0.0.1:$port/rest/licensee/$licensee/validate"
  # One line per product module instead of the whole JSON envelope.
  curl -sS -u "apiKey:$api_key" -H 'Accept: application/json' -d "$body" "http://127.0.0.1:$port/rest/licensee/$licensee/validate" |
    "$bun" -e 'const b = await Bun.stdin.json(); for (const i of b.items?.item ?? []) { const p = Object.fromEntries(i.property.map((x) => [x.name, x.value])); const extra = ["expires", "evaluationExpires", "expirationTimestamp", "remainingQuantity", "quota"].filter((k) => p[k] !== undefined).map((k) => `${k}=${p[k]}`).join(" "); console.log(`  ${p.productModuleNumber.padEnd(22)} ${p.licensingModel.padEnd(13)} valid=${p.valid ?? "-"} ${p.warningLevel} ${extra}`); } for (const i of b.infos?.info ?? []) console.log(`  info ${i.type} ${i.id}: ${i.value}`);'
}
call DEMO-SUBSCRIPTION ''
call DEMO-TRYANDBUY ''
call DEMO-FLOATING 'productModuleNumber0=DEMO-M-FLOATING&sessionId0=workstation-1&action0=checkOut'
call DEMO-PAYPERUSE 'productModuleNumber0=DEMO-M-PAYPERUSE&usedQuantity0=5'
echo
echo "== XML (what Java and C# clients get when they send no Accept header):"
curl -sS -u "apiKey:$api_key" -d 'productModuleNumber0=DEMO-M-QUOTA' "http://127.0.0.1:$port/rest/licensee/DEMO-QUOTA/validate" | head -c 600
echo " …"
if [ "${DEMO_ONESHOT:-0}" = "1" ]; then exit 0; fi
echo
echo "== the agent keeps serving on port $port; press Ctrl-C to stop it"
wait "$agent"
