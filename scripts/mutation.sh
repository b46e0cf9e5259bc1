#!/usr/bin/env bash
# Mutation testing of remediator/ and redis_autoheal/ with mutmut; README, "Mutation testing".
#
#   scripts/mutation.sh [MODULE...]           mutate MODULEs (remediator/recovery.py or
#                                             remediator.recovery; default: every module of
#                                             both packages), print each one's score
#   scripts/mutation.sh --record [MODULE...]  ... and record the scores in tests/mutation/scores.json
#   scripts/mutation.sh --check [MODULE...]   ... and fail if one is below its recorded score
#   scripts/mutation.sh --changed [BASE]      --check the modules changed since BASE (default:
#                                             the merge base with main, else HEAD~1); none: done
#
# mutmut mutates a copy of the tree (MUTATION_WORKDIR, default .mutation/, made anew each run),
# runs tests/remediator and tests/redis_autoheal once to learn which tests reach which
# function, then runs, for each mutant, only the tests that reach its function, stopping at the
# first failure, MUTATION_JOBS (default: the number of cores) at a time. It needs root, as those
# tests do. MUTATION_BUDGET (seconds, default none) stops the run after that long: a module
# then fails --check only if it stays below its record even were every untested mutant killed,
# and passes if it is at or above it already; one in between is reported undecided.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-$repo/.venv/bin/python}

mode=show base=""
case "${1:-}" in
  --record) mode=record; shift ;;
  --check) mode=check; shift ;;
  --changed)
    mode=check; shift
    base=${1:-$(git merge-base HEAD main 2>/dev/null || true)}
    if [ -z "$base" ] || [ "$base" = "$(git rev-parse HEAD)" ]; then base=HEAD~1; fi
    set -- ;;
esac

if [ -n "$base" ]; then
  read -r -a files <<<"$("$py" scripts/mutation.py modules --changed "$base")"
  if ((${#files[@]} == 0)); then
    echo "mutation: no module of remediator/ or redis_autoheal/ changed since $base"
    exit 0
  fi
else
  read -r -a files <<<"$("$py" scripts/mutation.py modules "$@")"
fi
echo "mutation: ${files[*]}"

work=${MUTATION_WORKDIR:-$repo/.mutation}
rm -rf "$work"
mkdir -p "$work"
# The tree as it is (tracked and new files, not ignored ones), without the earlier runs.
git ls-files -z --cached --others --exclude-standard \
  | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$work"
"$py" scripts/mutation.py configure "$work" "${files[@]}"

started=$(date +%s)
status=0
(
  cd "$work"
  if [ -n "${MUTATION_BUDGET:-}" ]; then
    exec timeout --signal=INT --kill-after=60 "$MUTATION_BUDGET" \
      "$py" -m mutmut run --max-children "${MUTATION_JOBS:-$(nproc)}"
  fi
  exec "$py" -m mutmut run --max-children "${MUTATION_JOBS:-$(nproc)}"
) >"$work/run.log" 2>&1 || status=$?
echo "mutation: mutmut ran $(($(date +%s) - started)) s (log: $work/run.log)"
if ((status != 0)) && ! { [ -n "${MUTATION_BUDGET:-}" ] && ((status == 124 || status == 130)); }; then
  tail -n 40 "$work/run.log" >&2
  echo "mutation: mutmut failed (exit $status)" >&2
  exit "$status"
fi

case $mode in
  show) exec "$py" scripts/mutation.py score "$work" "${files[@]}" ;;
  *) exec "$py" scripts/mutation.py score "$work" "--$mode" "${files[@]}" ;;
esac
