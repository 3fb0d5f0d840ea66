#!/usr/bin/env bash
# Serve a trained policy over HTTP, measure its latency from a client, and stop it.
#   RUN=experiments/vla_quickstart bash examples/vla/serve_policy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-experiments/vla_quickstart}
PORT=${PORT:-8765}

uv run python -m vla_foundry.inference.policy_server serve --run_dir "$RUN" --port "$PORT" &
SERVER=$!
trap 'kill -TERM $SERVER; wait $SERVER' EXIT   # SIGTERM (or Ctrl-C in the foreground) stops the server

until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 1; done
uv run python -m vla_foundry.inference.policy_server latency --url "http://127.0.0.1:$PORT" --n 50
