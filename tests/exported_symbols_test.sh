#!/usr/bin/env bash
# libdashnas.so must export the C ABI and nothing else, and carry a SONAME.
set -euo pipefail
lib=$1
symbols=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | sort -u)
others=$(echo "$symbols" | grep -v '^dash_' | grep -v '^$' || true)
if [ -n "$others" ]; then
  echo "exported symbols that are not dash_*:"; echo "$others" | head -20; exit 1
fi
# (A here-string, not echo | grep -q: grep may exit before echo has written,
# and pipefail then failed the check now and then.)
for f in dash_version dash_abi_version dash_last_error dash_task_create dash_task_set_data \
         dash_task_load_files dash_task_free dash_search dash_arch_to_json dash_arch_from_json \
         dash_arch_free dash_retrain dash_infer dash_evaluate dash_model_save dash_model_load \
         dash_model_set_device dash_model_free dash_string_free dash_options_describe \
         dash_task_input_size dash_task_target_size dash_model_input_size dash_task_interrupt \
         dash_report_html dash_arch_info dash_model_export_onnx dash_evaluate_with; do
  grep -qx "$f" <<< "$symbols" || { echo "missing export: $f"; exit 1; }
done
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[ "$soname" = "libdashnas.so.0" ] || { echo "SONAME is '$soname', expected libdashnas.so.0"; exit 1; }
echo "$(echo "$symbols" | wc -l) symbols, all dash_*; SONAME $soname"
