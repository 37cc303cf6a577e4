#!/usr/bin/env bash
# ctest package.deb: the Debian packages CPack makes, checked without installing them (a test must not change the
# machine). Builds both with cpack; checks what each holds, that the runtime package's Depends name the package of
# every shared library its binaries load (dpkg-shlibdeps), that apt could install it here with nothing more, and
# that its maintainer scripts parse. Then extracts it (dpkg-deb -x), verifies the systemd unit (systemd-analyze
# verify, if present) and runs the unit's own ExecStart line, with %i, %S, /usr/bin and /etc/cohort mapped into the
# extracted tree, on the packaged sample configuration (its members replaced by a lone node on free ports): the
# node serves a put and a get through the KV client, and SIGTERM stops it with status 0.
# PID 1 here is not systemd, so systemd itself never starts the unit.
#   deb_test.sh BUILD_DIR KV_CLIENT
set -euo pipefail
build=${1:?usage: deb_test.sh BUILD_DIR KV_CLIENT}
kv=${2:?usage: deb_test.sh BUILD_DIR KV_CLIENT}
work=$(mktemp -d -t cohort-deb-test.XXXXXX)
node_pid=""

cleanup() {
  local status=$?
  if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -KILL "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f "$work/node.log" ]]; then
    echo "--- node log"
    cat "$work/node.log"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

step cpack cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/packages"
runtime=$(find "$work/packages" -maxdepth 1 -name 'cohort_*.deb')
dev=$(find "$work/packages" -maxdepth 1 -name 'cohort-dev_*.deb')
[[ -f "$runtime" && -f "$dev" ]] || fail "cpack made no cohort_*.deb and cohort-dev_*.deb: $(ls "$work/packages")"
echo "packages: $(basename "$runtime") $(basename "$dev")"

# dpkg-deb --contents lists ./path as its sixth column (a symlink adds "-> target").
contents() { dpkg-deb --contents "$1" | awk '{print $6}'; }
contents "$runtime" >"$work/runtime.contents"
for path in ./usr/bin/cohortd ./usr/bin/cohort ./usr/lib/systemd/system/cohortd@.service \
  ./usr/share/doc/cohort/examples/cohort.toml; do
  grep -qxF "$path" "$work/runtime.contents" || fail "$(basename "$runtime") lacks $path"
done
if grep -E '^\./usr/(include|lib/cmake)/|\.a$' "$work/runtime.contents"; then
  fail "the runtime package holds development files (above)"
fi
contents "$dev" >"$work/dev.contents"
for pattern in '/include/cohort/node\.h$' '/include/cohort/client\.h$' '/include/cohort/version\.h$' \
  '/cmake/Cohort/CohortConfig\.cmake$' '/cmake/Cohort/CohortConfigVersion\.cmake$' '/libcohort_node\.a$' \
  '/libcohort_client\.a$'; do
  grep -qE "$pattern" "$work/dev.contents" || fail "$(basename "$dev") has no file matching $pattern"
done

dpkg-deb --extract "$runtime" "$work/root"
bin=$work/root/usr/bin

# Every shared library the packaged binaries load belongs to a package that Depends names (a library package may
# be named through what it Provides: libspdlog1.10 provides libspdlog1.10-fmt9, so a match on the name as a word).
depends=$(dpkg-deb --field "$runtime" Depends)
echo "Depends: $depends"
# The libraries the binaries name themselves (NEEDED): the ones they load through those come with their packages'
# own Depends (libcivetweb1 with libprometheus-cpp-pull1.0), which the apt simulation below checks.
for library in $(ldd "$bin/cohortd" "$bin/cohort" | awk '$2 == "=>" && $3 ~ /^\// {print $1 " " $3}' |
                 grep -F -f <(objdump -p "$bin/cohortd" "$bin/cohort" | awk '$1 == "NEEDED" {print $2}' | sort -u) |
                 awk '{print $2}' | sort -u); do
  owners=$(dpkg -S "*/$(basename "$library")" 2>/dev/null | sed 's/:.*//; s/,/ /g' | tr ' ' '\n' | sort -u)
  [[ -n "$owners" ]] || fail "no Debian package holds $library"
  found=""
  for owner in $owners; do
    grep -qwF "$owner" <<<"$depends" && found=$owner
  done
  [[ -n "$found" ]] || fail "$library (package ${owners//$'\n'/ or }) is not in Depends: $depends"
done
# The packages this machine runs the binaries with satisfy Depends: apt would install nothing else.
step apt-simulate apt-get --simulate --no-install-recommends install "$runtime"
if grep '^Inst ' "$work/apt-simulate.log" | grep -v '^Inst cohort '; then
  fail "installing $(basename "$runtime") here would need the packages above"
fi
dpkg-deb --control "$runtime" "$work/control"
for script in postinst prerm postrm; do
  [[ -x "$work/control/$script" ]] || fail "no executable $script in $(basename "$runtime")"
  sh -n "$work/control/$script" || fail "$script does not parse"
done
"$bin/cohortd" --version >/dev/null || fail "the packaged cohortd does not run"
"$bin/cohort" --version >/dev/null || fail "the packaged cohort tool does not run"

unit=$work/root/usr/lib/systemd/system/cohortd@.service
instance=test
# The unit's paths and specifiers, mapped into the extracted tree and this test's directories.
map() {
  local text=$1
  text=${text//%i/$instance}
  text=${text//%S/$work/state}
  text=${text//\/usr\/bin\//$bin/}
  text=${text//\/etc\/cohort\//$work/etc/cohort/}
  [[ "$text" != *%* ]] || fail "the unit uses a specifier this test does not map: $text"
  printf '%s' "$text"
}

# systemd-analyze checks the binary named by ExecStart exists, so it reads a copy whose /usr/bin is the extracted
# one; anything it prints (an unknown key, a bad value) fails the test.
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/units"
  sed "s#/usr/bin/#$bin/#g" "$unit" >"$work/units/cohortd@$instance.service"
  verify=$(systemd-analyze verify "$work/units/cohortd@$instance.service" 2>&1) || fail "systemd-analyze verify: $verify"
  [[ -z "$verify" ]] || fail "systemd-analyze verify: $verify"
  echo "systemd-analyze verify: clean"
else
  echo "systemd-analyze not found: the unit's syntax was not verified"
fi

[[ $(grep -c '^ExecStart=' "$unit") -eq 1 ]] || fail "the unit has not exactly one ExecStart line"
read -ra command <<<"$(map "$(sed -n 's/^ExecStart=//p' "$unit")")"
# What systemd prepares before ExecStart: the state directory (StateDirectory=, under %S).
for directory in $(sed -n 's/^StateDirectory=//p' "$unit"); do
  mkdir -p "$work/state/$(map "$directory")"
done
mkdir -p "$work/etc/cohort"
cp "$work/root/usr/share/doc/cohort/examples/cohort.toml" "$work/etc/cohort/$instance.toml"
cluster_id=$(sed -n 's/^cluster_id *= *\([0-9]*\).*/\1/p' "$work/etc/cohort/$instance.toml")
[[ -n "$cluster_id" ]] || fail "the sample configuration sets no cluster_id"
echo "ExecStart, mapped: ${command[*]}"

# Port 0: the node binds free ports itself and prints them, so concurrent tests never collide.
"${command[@]}" --member 1,127.0.0.1:0,127.0.0.1:0 >"$work/node.out" 2>"$work/node.log" &
node_pid=$!
for _ in $(seq 1 200); do
  grep -q '^clients on ' "$work/node.out" 2>/dev/null && break
  kill -0 "$node_pid" 2>/dev/null || fail "the node exited before it was listening"
  sleep 0.05
done
endpoint=$(sed -n 's/^clients on //p' "$work/node.out")
[[ -n "$endpoint" ]] || fail "the node did not print its client endpoint"
echo "node listening for clients on $endpoint"

client() { "$kv" --cluster-id "$cluster_id" --members "$endpoint" --timeout 20 "$@"; }
[[ "$(client put package deb)" == ok ]] || fail "put did not answer ok"
answer=$(client get package)
[[ "$answer" == deb ]] || fail "get answered '$answer', expected deb"
echo "put package deb, get package: $answer"
[[ -n "$(ls -A "$work/state/cohort/$instance")" ]] || fail "the node wrote nothing in its state directory"

kill -TERM "$node_pid"
status=0
wait "$node_pid" || status=$?
node_pid=""
[[ $status -eq 0 ]] || fail "the node exited with status $status after SIGTERM"
echo "node stopped gracefully; PASS"
