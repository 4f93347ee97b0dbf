#!/usr/bin/env bash
# Build and run the main job on the built-in default model. The README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/ggx run -p "${1:-ROMEO:}" -n "${2:-64}"
