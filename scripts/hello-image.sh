#!/usr/bin/env bash
# Builds the demo function's container image locally, with no registry:
# a static hello binary in an image FROM scratch, tagged pilotlight/hello:latest
# (or the tag given as $1). Needs cargo and a running Docker engine.
exec bash "$(dirname "$0")/function-image.sh" hello "${1:-pilotlight/hello:latest}"
