# Shared by the package tests (sourced): a failure that says what, and steps whose output is shown only if they fail.
# Expects $work, a directory the sourcing script owns.

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Runs a step with its output in $work/NAME.log, shown only if it fails.
step() {
  local name=$1
  shift
  local started=$SECONDS
  if ! "$@" >"$work/$name.log" 2>&1; then
    cat "$work/$name.log" >&2
    fail "$name: $*"
  fi
  echo "$name: $((SECONDS - started)) s"
}
