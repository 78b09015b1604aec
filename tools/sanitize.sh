#!/bin/bash
# The transport tests against the C reactor built with AddressSanitizer and UBSan (make sanitize).
# The sanitized build goes into a copy of the package in a temporary folder, put first on
# PYTHONPATH, so the checkout's own build is left alone. Needs gcc with libasan and libubsan.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r namewire "$work/"
find "$work/namewire" -name '*.so' -delete
include=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
suffix=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
# The warning flags are setup.py's, made errors here: a sanitized run also checks the build is clean.
gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -shared -fPIC -I"$include" \
    -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror \
    namewire/transport/_native.c -o "$work/namewire/transport/_native$suffix"
preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# Leak checking is off: CPython's own allocations at exit would drown the report.
LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1 \
    PYTHONPATH="$work" .venv/bin/python -m pytest tests/transport -p no:cacheprovider "$@"
