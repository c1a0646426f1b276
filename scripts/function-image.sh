#!/usr/bin/env bash
# Builds a demo function's container image locally, with no registry: its
# static binary in an image FROM scratch. Needs cargo and a running Docker engine.
#   bash scripts/function-image.sh hello            # pilotlight/hello:latest
#   bash scripts/function-image.sh wsecho my/ws:1   # any tag
#   bash scripts/function-image.sh hello --context DIR   # only write the build context
#                                                        # (Dockerfile + binary) to DIR, for `deploy --build DIR`
set -euo pipefail
cd "$(dirname "$0")/.."
package="${1:?usage: function-image.sh <hello|wsecho> [tag]}"
[[ -d "examples/functions/$package" ]] || { echo "function-image.sh: no demo function \`$package\` under examples/functions" >&2; exit 2; }
context_dir=""
if [[ "${2:-}" == "--context" ]]; then
  context_dir="${3:?function-image.sh: --context needs a directory}"
  tag=""
else
  tag="${2:-pilotlight/$package:latest}"
fi
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet -p "$package" --target "$target"
if [[ -n "$context_dir" ]]; then
  context="$context_dir"
  mkdir -p "$context"
else
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
fi
cp "target/$target/release/$package" "$context/$package"
printf 'FROM scratch\nCOPY %s /%s\nEXPOSE 8080\nENTRYPOINT ["/%s"]\n' "$package" "$package" "$package" > "$context/Dockerfile"
if [[ -n "$context_dir" ]]; then
  echo "wrote $context: Dockerfile and $package ($(stat -c %s "$context/$package") bytes)"
  exit 0
fi
# The legacy builder prints a deprecation notice on stderr; show stderr only if the build fails.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" >/dev/null 2>"$context/build.log" || { cat "$context/build.log" >&2; exit 1; }
echo "built $tag ($(docker image inspect --format '{{.Size}}' "$tag") bytes)"
