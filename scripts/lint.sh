#!/usr/bin/env bash
# clang-format check over every C++ file (fails on any difference), then clang-tidy over the project's own
# sources using the release build's compile_commands.json (scripts/tidy.py skips files it already found clean with
# the same inputs). --format-only skips clang-tidy.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files '*.h' '*.cpp')
if ! clang-format --dry-run --Werror "${files[@]}"; then
  echo "lint: files above are not clang-formatted; run: clang-format -i \$(git ls-files '*.h' '*.cpp')" >&2
  exit 1
fi
[[ "${1:-}" == "--format-only" ]] && exit 0

mapfile -t sources < <(git ls-files 'src/*.cpp' 'tools/*.cpp')
if ! python3 scripts/tidy.py build/release "${sources[@]}"; then
  echo "lint: clang-tidy found problems (above)" >&2
  exit 1
fi
echo "lint: clean"
