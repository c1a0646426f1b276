#!/usr/bin/env bash
# Installs and starts the outside services the tests need, from Debian's
# packages. Idempotent. The foundation needs none; each backend that needs a
# service (nginx, rabbitmq-server, pebble, chromium-driver) adds it here.
# nginx-light: the NGINX router's tests run a real NGINX (managed, as the current user);
# the package's own service is not started. libssl-dev, pkg-config: librdkafka with TLS
# (pilotlight-kafka's `ssl` feature).
# chromium, chromium-driver: the web UI's browser test (headless, WebDriver).
# socat: the self-healing test cuts the Docker engine API off through a relay socket.
# docker-registry, apache2-utils (htpasswd): the private-registry test runs its own
# registry with htpasswd auth on a loopback port (the package's own service is not used).
# python3 (with venv): schemathesis, below.
# etcd-server: the Store on etcd is tested against real members the tests start on
# loopback ports (the package's own service is not used); protobuf-compiler: etcd-client's
# build runs protoc.
set -euo pipefail

packages=(pebble nginx-light libssl-dev pkg-config rabbitmq-server chromium chromium-driver socat docker-registry apache2-utils etcd-server protobuf-compiler)

if [ ${#packages[@]} -gt 0 ]; then
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
    # The downloaded .deb files (about 200 MB with chromium) are not needed again.
    $sudo_cmd apt-get clean
  fi
fi
# RabbitMQ for the AMQP queue's tests, on loopback only (guest/guest is
# allowed from localhost). Started here unless a broker already answers.
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  echo "starting rabbitmq-server on 127.0.0.1:5672"
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
fi
# Right after -detached the node is not reachable yet and await_startup
# fails at once, so try for up to 90 s; the last try prints why it failed.
for _ in $(seq 1 90); do
  rabbitmqctl -q await_startup >/dev/null 2>&1 && break
  sleep 1
done
timeout 60 rabbitmqctl -q await_startup

# schemathesis, from PyPI, in a virtualenv of the project's (the OpenAPI
# fuzz test, tests/openapi_fuzz.rs, runs it against a live server). Pinned:
# a new version may add checks.
venv=target/schemathesis-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "4.32.5"; then
  echo "installing schemathesis 4.32.5 into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi

echo "test dependencies ready"
