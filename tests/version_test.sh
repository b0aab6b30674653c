#!/usr/bin/env bash
# The version is written once, in CMakeLists.txt's project(VERSION); every
# other place that states it must agree: the public header's macros, the
# shared library's SONAME (its major version), the Rust crate, and the Go
# binding (which must take it from the header, not hard-code it).
#   version_test.sh PROJECT_VERSION LIBDASHNAS SOURCE_DIR
set -euo pipefail
version=$1 lib=$2 src=$3
major=${version%%.*} rest=${version#*.}
minor=${rest%%.*} patch=${rest#*.}
header=$src/include/dash/dash.h
fail() { echo "version mismatch: $*"; exit 1; }
macro() { awk -v m="$1" '$1 == "#define" && $2 == m {print $3}' "$header" | tr -d '"'; }
[ "$(macro DASH_VERSION_MAJOR)" = "$major" ] || fail "DASH_VERSION_MAJOR is $(macro DASH_VERSION_MAJOR), CMake says $major"
[ "$(macro DASH_VERSION_MINOR)" = "$minor" ] || fail "DASH_VERSION_MINOR is $(macro DASH_VERSION_MINOR), CMake says $minor"
[ "$(macro DASH_VERSION_PATCH)" = "$patch" ] || fail "DASH_VERSION_PATCH is $(macro DASH_VERSION_PATCH), CMake says $patch"
[ "$(macro DASH_VERSION_STRING)" = "$version" ] || fail "DASH_VERSION_STRING is $(macro DASH_VERSION_STRING), CMake says $version"
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[ "$soname" = "libdashnas.so.$major" ] || fail "SONAME is $soname, expected libdashnas.so.$major"
crate=$(awk -F'"' '/^version *=/ {print $2; exit}' "$src/bindings/rust/Cargo.toml")
[ "$crate" = "$version" ] || fail "bindings/rust/Cargo.toml says $crate, CMake says $version"
if grep -rn --include='*.go' -F "\"$version\"" "$src/bindings/go"; then
  fail "the Go binding hard-codes the version; take it from dash_version()"
fi
echo "version $version everywhere (header, SONAME $soname, Rust crate, Go from the library)"
