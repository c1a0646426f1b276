#!/usr/bin/env bash
# Installs and starts the outside services the tests need, from Debian's
# packages. Idempotent. The foundation needs none; each backend that needs a
# service (nginx, rabbitmq-server, pebble, chromium-driver) adds it here.
set -euo pipefail

packages=(pebble)

if [ ${#packages[@]} -gt 0 ]; then
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
  fi
fi
echo "test dependencies ready"
