#!/usr/bin/env bash
# Builds the demo function's container image locally, with no registry:
# a static hello binary in an image FROM scratch, tagged pilotlight/hello:latest
# (or the tag given as $1). Needs cargo and a running Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-pilotlight/hello:latest}"
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet -p hello --target "$target"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "target/$target/release/hello" "$context/hello"
printf 'FROM scratch\nCOPY hello /hello\nEXPOSE 8080\nENTRYPOINT ["/hello"]\n' > "$context/Dockerfile"
# The legacy builder prints a deprecation notice on stderr; show stderr only if the build fails.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" >/dev/null 2>"$context/build.log" || { cat "$context/build.log" >&2; exit 1; }
echo "built $tag ($(docker image inspect --format '{{.Size}}' "$tag") bytes)"
