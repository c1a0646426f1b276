#!/usr/bin/env bash
# Builds the demo function's container image locally, with no registry:
# a static hello binary in an image FROM scratch, tagged pilotlight/hello:latest
# (or the tag given as $1). Needs cargo and a running Docker engine.
# With `--context DIR` it only writes the build context (Dockerfile and
# binary) to DIR, for `pilotlight deploy hello --build DIR`.
if [[ "${1:-}" == "--context" ]]; then
  exec bash "$(dirname "$0")/function-image.sh" hello --context "${2:?hello-image.sh: --context needs a directory}"
fi
exec bash "$(dirname "$0")/function-image.sh" hello "${1:-pilotlight/hello:latest}"
