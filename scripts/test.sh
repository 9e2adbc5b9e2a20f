#!/usr/bin/env bash
# Runs every check and test of sniway: installs the tools the tests use when they are missing,
# then cargo fmt --check, clippy with warnings denied, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The benchmark's smoke run and the demo test make network namespaces of their own (unshare,
# ip); the keep-alive test reads sockets with ss (iproute2); the backend failover test makes a
# network namespace and a veth pair into it with ip (as root) for a blackholed endpoint.
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# Databases through the gateway with their stock clients: PostgreSQL (server and psql), Redis.
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# The benchmark still runs (tiny counts, sniway and a direct reference; never judges speed).
bash bench/compare.sh --smoke
