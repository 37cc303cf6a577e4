#!/usr/bin/env bash
# Installs the Debian packages Cohort needs to build, test and benchmark. Idempotent, and quick when
# everything is present: it asks dpkg first and runs apt-get only for what is missing.
set -euo pipefail

packages=(
  cmake ninja-build ccache g++ clang-14 libclang-rt-14-dev clang-format clang-tidy
  libasio-dev libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev
  procps iproute2 python3 gnuplot-nox
  dpkg-dev file
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing missing packages: ${missing[*]}" >&2
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
