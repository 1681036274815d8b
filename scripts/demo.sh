#!/usr/bin/env bash
# The demo: copies the bundled demo export (demo/1_netlicensing-assets.xml, made
# by scripts/make-demo.ts: one licensee per licensing model) into a fresh
# working directory demo-run/, imports it there, starts the agent on it
# (127.0.0.1, port $PORT or 8080; admin listener $ADMIN_PORT or 8081), shows a
# few validate calls a client would make, and keeps serving until Ctrl-C.
# DEMO_ONESHOT=1 stops after the calls, DEMO_DIR sets the working directory
# (for scripts and tests).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bun="$root/node_modules/.bin/bun"
run_dir="${DEMO_DIR:-$root/demo-run}"
admin_port="${ADMIN_PORT:-8081}"
port="${PORT:-8080}"

rm -rf "$run_dir"
mkdir -p "$run_dir"
cp "$root"/demo/*_netlicensing-assets.xml "$run_dir/"
echo "== importing the demo export in $run_dir"
(cd "$run_dir" && "$bun" "$root/src/main.ts" --action=import-assets)

echo "== starting the agent: http://127.0.0.1:$port/rest/ (status page: http://127.0.0.1:$admin_port/status)"
(cd "$run_dir" && exec "$bun" "$root/src/main.ts" --action=run-agent-offline --host=127.0.0.1 --port="$port" --admin.port="$admin_port") &
agent=$!
trap 'kill -TERM "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true' EXIT
"$bun" "$root/scripts/demo-client.ts" "$port"
if [ "${DEMO_ONESHOT:-0}" = "1" ]; then
  # Stop it as a service manager would, and report how it ended (0: drained, store closed).
  trap - EXIT
  kill -TERM "$agent"
  status=0
  wait "$agent" || status=$?
  echo "== the agent stopped (exit $status)"
  exit "$status"
fi
echo
echo "== the agent keeps serving on port $port; press Ctrl-C to stop it"
wait "$agent"
