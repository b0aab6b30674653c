#!/bin/sh
# The run report as a person sees it: headless Chromium renders the page the
# runner writes for a recorded run (tests/data/report_run_1d.json, a spoken
# digits DASH run) and the screenshot must not be blank. Skipped (exit 77,
# visible in ctest's output) where chromium or python3 is not installed.
# usage: report_screenshot_test.sh DASHNAS_BINARY SOURCE_DIR
set -eu
runner=$1
src=$2
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ] || ! command -v python3 >/dev/null; then
  echo "SKIPPED: chromium or python3 is not installed (apt-get install chromium python3)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$runner" report "$src/tests/data/report_run_1d.json" -o "$work/report.html"
HOME=$work timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size=1150,3000 --screenshot="$work/report.png" "file://$work/report.html" >/dev/null 2>&1
python3 - "$work/report.png" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, size = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        size = struct.unpack(">II", body[:8])
    if kind == b"IDAT":
        idat += body
    pos += 12 + n
pixels = zlib.decompress(idat)
distinct = len(set(pixels))
print(f"screenshot {size[0]}x{size[1]}: {distinct} distinct byte values in its image data")
# A blank page decompresses to a handful of values; the report's text,
# colours and heat maps give well over a hundred.
assert distinct >= 50, "the screenshot is blank"
PY
