#!/usr/bin/env bash
# Installs what building and running Apotheca needs on Debian, when it is missing:
# a C toolchain, cmake, pkg-config and OpenSSL's headers (for native crates), and PostgreSQL's server programs
# (initdb, pg_ctl, postgres, psql, pg_dump), which the private cluster runs; openssl and curl for
# the development certificate and the proxy's tests; Python with venv for the import's tests
# (Django comes from PyPI into a virtualenv under target/); HAProxy for the multi-host tests
# (Debian's package also installs its service, idle with the default configuration); with
# --lint also what CI's checks use
# (rustfmt, clippy, shellcheck).
# Rust itself must already be installed (rustup); Debian's own cargo is too old.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# OpenSSL's headers: the proxy's TLS (Pingora, openssl backend).
[[ -e /usr/include/openssl/ssl.h ]] || need+=(libssl-dev)
# `apotheca up` makes its development certificate with the openssl command.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The proxy's tests speak HTTP/2 through curl.
command -v curl >/dev/null 2>&1 || need+=(curl)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
compgen -G '/usr/lib/postgresql/*/bin/pg_dump' >/dev/null || need+=(postgresql-client)
# The import's tests make the pharmacy app's databases with Django, in a virtualenv.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# The multi-host tests put Debian's HAProxy in front of two Apotheca hosts.
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
# --lint (CI): shellcheck for the deploy scripts (deploy/nginx-free/check.sh).
if [[ ${1:-} == --lint ]]; then
  command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
fi

if ((${#need[@]})); then
  echo "installing: ${need[*]}" >&2
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: Rust is not installed. Install it with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi
if [[ ${1:-} == --lint ]]; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >&2
  done
fi
