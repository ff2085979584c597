#!/usr/bin/env bash
# Installs the Debian packages named (as root), skipping those already
# installed, without starting the services they ship (redis-server's and
# nginx's packages would otherwise start a daemon on their default port; the
# scripts and tests start their own, on free ports, and stop them by PID).
#
#   bash scripts/apt-install.sh redis-server nginx
set -euo pipefail
missing=()
for package in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "== apt-get install ${missing[*]}"
# invoke-rc.d asks policy-rc.d whether to start a service: 101 says no.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  made_policy=1
fi
trap 'if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
