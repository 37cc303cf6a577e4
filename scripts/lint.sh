#!/usr/bin/env bash
# clang-format check over every C++ file (fails on any difference), then clang-tidy over the project's own
# sources using the release build's compile_commands.json. --format-only skips clang-tidy (it is slow).
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files '*.h' '*.cpp')
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "lint: files above are not clang-formatted; run: clang-format -i \$(git ls-files '*.h' '*.cpp')" >&2
  exit 1
fi
[[ "${1:-}" == "--format-only" ]] && exit 0

mapfile -t sources < <(git ls-files 'src/*.cpp' 'tools/*.cpp')
run-clang-tidy -quiet -p build/release "${sources[@]}" >/tmp/cohort-tidy.log 2>&1 || {
  grep -E 'warning:|error:' /tmp/cohort-tidy.log | sort -u >&2
  echo "lint: clang-tidy found problems (full log: /tmp/cohort-tidy.log)" >&2
  exit 1
}
echo "lint: clean"
