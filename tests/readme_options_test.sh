#!/usr/bin/env bash
# README.md's option table must be what the library describes
# (dash_options_describe, printed by `dashnas --options-markdown`).
set -euo pipefail
cli=$1
readme=$(dirname "$0")/../README.md
diff <(sed -n '/<!-- options:begin -->/,/<!-- options:end -->/p' "$readme" | sed '1d;$d') \
     <("$cli" --options-markdown) \
  || { echo "README.md's option table is stale: regenerate it with build/dashnas --options-markdown"; exit 1; }
echo "README option table matches dash_options_describe"
