#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh demo [args]   set up, then run the closed-loop demo (sim arm + three nodes + built-in model)
#   ./run.sh test [args]   set up, then run the whole test suite
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:-}
shift || true
"$ROOT/tools/setup_env.sh"
# shellcheck source=tools/ros_env.sh
source "$ROOT/tools/ros_env.sh"
VENV=${VLA_VENV:-$ROOT/.venv}
cd "$ROOT"
case "$cmd" in
  demo) exec "$VENV/bin/vla-accel" demo "$@" ;;
  test) exec "$VENV/bin/python" -m pytest test "$@" ;;
  *) echo "usage: ./run.sh demo|test [args]" >&2; exit 2 ;;
esac
