#!/usr/bin/env bash
# Serve a trained policy over HTTP, measure its latency from a client, and stop it.
#   RUN=experiments/vla_quickstart bash examples/vla/serve_policy.sh [extra flags for the server]
# DRY_RUN=1 prints the server and client commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-experiments/vla_quickstart}
PORT=${PORT:-8765}
SERVE=(uv run python -m vla_foundry.inference.policy_server serve --run_dir "$RUN" --port "$PORT" "$@")
LATENCY=(uv run python -m vla_foundry.inference.policy_server latency --policy_url "http://127.0.0.1:$PORT" --n 50)
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${SERVE[@]}" && echo
  printf '%q ' "${LATENCY[@]}" && echo
  exit 0
fi

"${SERVE[@]}" &
SERVER=$!
trap 'kill -TERM $SERVER; wait $SERVER' EXIT   # SIGTERM (or Ctrl-C in the foreground) stops the server

# Wait until the model is loaded and the server answers /health.
uv run python -c "
import time
from vla_foundry.inference import PolicyClient
client = PolicyClient('http://127.0.0.1:$PORT', timeout_s=2)
for _ in range(600):
    try:
        client.health()
        break
    except OSError:
        time.sleep(0.5)
"
"${LATENCY[@]}"
