#!/usr/bin/env bash
# Runs a benchmark in release mode, installing what it needs from Debian's packages.
#   bash scripts/bench.sh gateway    # direct vs gateway vs NGINX, with wrk
#   bash scripts/bench.sh edge       # a Docker function: direct vs NGINX vs gateway, published port vs namespace; cold starts
#   bash scripts/bench.sh docker     # raw engine vs pilotlight: cold start, unpause, concurrent starts
#   bash scripts/bench.sh coldstart  # first request at zero: warm pool vs no pool vs the engine's floors (BENCH_DENSITY=N: density)
#   bash scripts/bench.sh queue      # memory vs Kafka (mock cluster) vs RabbitMQ: events/s, publish→handled latency
#   bash scripts/bench.sh nginx      # NGINX router: apply time at 10..10,000 functions vs the gateway; requests
#   bash scripts/bench.sh async      # async invocations vs sync calls; topic triggers on memory, Kafka, RabbitMQ vs the raw queue
#   bash scripts/bench.sh reconcile  # one periodic pass at 100 and 1,000 functions, drift until healed, deploys vs the raw engine
#   bash scripts/bench.sh cluster    # 3 nodes on 3 etcd members: etcd vs redb CAS, the cross-node hop, failover, RSS at 1,000 functions
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-gateway}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
cargo build --release -q -p hello
case "$which" in
  gateway) cargo run --release -q --example bench_gateway ;;
  nginx) cargo run --release -q --example bench_nginx ;;
  queue) bash scripts/deps.sh >/dev/null && cargo run --release -q --example bench_queue ;;
  async) bash scripts/deps.sh >/dev/null && cargo run --release -q --example bench_async ;;
  cluster) bash scripts/deps.sh >/dev/null && cargo run --release -q --features etcd --example bench_cluster ;;
  coldstart)
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p hello --target x86_64-unknown-linux-gnu
    cargo run --release -q --example bench_coldstart ;;
  reconcile)
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p hello --target x86_64-unknown-linux-gnu
    cargo run --release -q --example bench_reconcile ;;
  edge)
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p hello --target x86_64-unknown-linux-gnu
    cargo run --release -q --example bench_edge ;;
  docker)
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p hello --target x86_64-unknown-linux-gnu
    cargo run --release -q --example bench_docker ;;
  *) echo "unknown benchmark: $which (try: gateway, edge, docker, coldstart, nginx, queue, async, reconcile, cluster)" >&2; exit 2 ;;
esac
