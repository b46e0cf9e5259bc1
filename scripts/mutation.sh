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
# For each module, mutmut mutates a copy of the tree (MUTATION_WORKDIR/<module>, default
# .mutation/, made anew each run), runs the module's tests (TESTS in scripts/mutation.py) once
# to learn which tests reach which function, then runs, for each mutant, only the tests that
# reach its function, fastest first, stopping at the first failure, MUTATION_JOBS (default: the
# number of cores) at a time. It needs root, as some of those tests do. MUTATION_BUDGET
# (seconds, default none) stops the run after that long: a module cut short then fails --check
# only if it stays below its record even were every untested mutant killed, and passes if it is
# at or above it already; one in between is reported undecided, as is one not reached.
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
  | tar --null -T - --ignore-failed-read -cf "$work/tree.tar" 2>/dev/null

started=$(date +%s)
for file in "${files[@]}"; do
  name=${file%.py}
  name=${name//\//.}
  left=""
  if [ -n "${MUTATION_BUDGET:-}" ]; then
    left=$((MUTATION_BUDGET - ($(date +%s) - started)))
    ((left > 0)) || break
  fi
  # Each module in its own copy, mutated alone and tested by its own tests (TESTS in
  # scripts/mutation.py).
  dir=$work/$name
  mkdir -p "$dir"
  tar -xf "$work/tree.tar" -C "$dir"
  "$py" scripts/mutation.py configure "$dir" "$file"
  t0=$(date +%s)
  status=0
  (
    cd "$dir"
    run=("$py" -m mutmut run --max-children "${MUTATION_JOBS:-$(nproc)}")
    if [ -n "$left" ]; then
      exec timeout --signal=INT --kill-after=60 "$left" "${run[@]}"
    fi
    exec "${run[@]}"
  ) >"$dir/run.log" 2>&1 || status=$?
  echo "mutation: $name: mutmut ran $(($(date +%s) - t0)) s (log: $dir/run.log)"
  if ((status != 0)) && ! { [ -n "$left" ] && ((status == 124 || status == 130)); }; then
    tail -n 40 "$dir/run.log" >&2
    echo "mutation: $name: mutmut failed (exit $status)" >&2
    exit "$status"
  fi
done
echo "mutation: $(($(date +%s) - started)) s in all"

case $mode in
  show) exec "$py" scripts/mutation.py score "$work" "${files[@]}" ;;
  *) exec "$py" scripts/mutation.py score "$work" "--$mode" "${files[@]}" ;;
esac
