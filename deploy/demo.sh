#!/usr/bin/env bash
# The README's run command: builds sekishod, sekishoctl and sekisho-lab, installs the
# lab's programs if missing, and runs `sekisho-lab demo` — the lab topology in network
# namespaces, sekishod enforcing configs/lab.toml, `sekishoctl status`, a table of allowed
# and forbidden connections, a commit-confirm reload that rolls back by itself, teardown.
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "the lab creates network namespaces: run as root (sudo $0)" >&2
  exit 2
fi
deploy/install-lab-deps.sh
cargo build --release -p sekishod -p sekishoctl -p sekisho-lab
exec target/release/sekisho-lab demo -c configs/lab.toml "$@"
