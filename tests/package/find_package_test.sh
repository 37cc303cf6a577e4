#!/usr/bin/env bash
# ctest package.find_package: Cohort as a user's project sees it. Installs the build tree into a fresh prefix
# (cmake --install), checks that nothing installed names the source or build tree, compiles every installed public
# header alone with the project's warnings (each is self-contained and includes nothing from src/), then configures
# and builds examples/counter as a project of its own against that prefix (find_package(Cohort)) and runs its
# smoke test on the binaries built there.
#   find_package_test.sh BUILD_DIR SOURCE_DIR WORK_DIR CXX [COMPILER_LAUNCHER]
set -euo pipefail
build=${1:?usage: find_package_test.sh BUILD_DIR SOURCE_DIR WORK_DIR CXX [COMPILER_LAUNCHER]}
source=${2:?}
work=${3:?}
cxx=${4:?}
launcher=${5:-}

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

prefix=$work/prefix
step install cmake --install "$build" --prefix "$prefix"
config_dir=$(dirname "$(find "$prefix" -name CohortConfig.cmake -print -quit)")
[[ -f "$config_dir/CohortConfigVersion.cmake" ]] || fail "no CohortConfig.cmake and CohortConfigVersion.cmake installed"
if grep -rlF -e "$source" -e "$build" "$config_dir"; then
  fail "the installed CMake package names the source or build tree (above)"
fi

mapfile -t headers < <(cd "$prefix/include" && find cohort -name '*.h' | sort)
[[ ${#headers[@]} -gt 0 ]] || fail "no public headers installed"
for required in cohort/node.h cohort/service.h cohort/client.h cohort/admin.h cohort/version.h \
  cohort/services/kv_codec.h cohort/services/kv_service.h; do
  [[ -f "$prefix/include/$required" ]] || fail "$required is not installed"
done
# Each header in a file of its own, compiled to an object through the launcher (ccache keeps the result for the
# next run: it caches neither standard input nor -fsyntax-only), as many at once as there are cores. An error names
# the header ("In file included from .../N.cpp").
launcher_command=()
[[ -n "$launcher" ]] && launcher_command=("$launcher")
compile_alone() {
  mkdir -p "$work/headers"
  local index=0
  for header in "${headers[@]}"; do
    index=$((index + 1))
    printf '#include <%s>\n' "$header" >"$work/headers/$index.cpp"
  done
  printf '%s\n' "$work"/headers/*.cpp | xargs -P "$(nproc)" -I{} "${launcher_command[@]}" "$cxx" -std=c++20 -Wall \
    -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast -Werror -I "$prefix/include" \
    -c {} -o {}.o
}
step headers compile_alone

# No optimization: the example only has to build and run, and -O2 doubles the time of a build ccache cannot serve.
launcher_option=()
[[ -n "$launcher" ]] && launcher_option=("-DCMAKE_CXX_COMPILER_LAUNCHER=$launcher")
step configure cmake -S "$source/examples/counter" -B "$work/counter" -G Ninja -DCMAKE_BUILD_TYPE= \
  -DCMAKE_CXX_COMPILER="$cxx" "${launcher_option[@]}" -DCMAKE_PREFIX_PATH="$prefix"
# Nothing else may have been found instead: a Cohort installed on the machine, or the build tree.
grep -qxF "Cohort_DIR:PATH=$config_dir" "$work/counter/CMakeCache.txt" ||
  fail "find_package(Cohort) did not find the package in $prefix: $(grep '^Cohort_DIR' "$work/counter/CMakeCache.txt")"
step build cmake --build "$work/counter"
"$source/examples/counter/smoke.sh" "$work/counter"
