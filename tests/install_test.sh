#!/usr/bin/env bash
# `cmake --install` gives a usable library: a C program finds it through the
# pkg-config file and through the CMake package, builds, and runs.
set -euo pipefail
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > /dev/null
cat > "$work/main.c" <<'C'
#include <dash/dash.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  dash_task *task = NULL;
  if (dash_abi_version() != DASH_ABI_VERSION || strcmp(dash_version(), DASH_VERSION_STRING) != 0) return 1;
  if (dash_task_create("{\"kind\": \"regression\", \"input_shape\": [1, 8], \"num_outputs\": 1}", &task)) return 2;
  dash_task_free(task);
  puts(dash_version());
  return 0;
}
C
# pkg-config (its rpath makes the program run without LD_LIBRARY_PATH)
cc -std=c99 -Wall -Werror "$work/main.c" -o "$work/with_pc" \
  $(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs dashnas)
"$work/with_pc"
# CMake package
mkdir -p "$work/proj"
cat > "$work/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(use_dashnas C)
find_package(dashnas 0.2 REQUIRED)
add_executable(use_dashnas ../main.c)
target_link_libraries(use_dashnas PRIVATE dashnas::dashnas)
CM
cmake -S "$work/proj" -B "$work/proj/build" -DCMAKE_PREFIX_PATH="$work/prefix" > /dev/null
cmake --build "$work/proj/build" > /dev/null
"$work/proj/build/use_dashnas"
echo "installed library found through pkg-config and find_package(dashnas)"
