#!/usr/bin/env bash
# System packages the dashboard and deploy tests need (tests/dashboard, tests/deploy): a real Prometheus (and
# promtool), a headless Chromium with its WebDriver, and a PostgreSQL server. Debian packages; idempotent (skips apt when all are there).
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# PostgreSQL server binaries (tests/deploy start a throwaway server as the postgres user): Debian keeps them
# under /usr/lib/postgresql/<version>/bin, off PATH
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v runuser >/dev/null || need+=(util-linux)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-test-deps: prometheus, promtool, chromium, chromedriver, postgresql present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u)
