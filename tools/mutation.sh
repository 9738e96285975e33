#!/usr/bin/env bash
# Mutation testing (mutmut) of the scope in setup.cfg [mutmut] only_mutate, against the fast tests
# listed there; not in CI. Niced, one worker: leaves the other cores to their users. Runs in a
# scratch copy of the checkout (tracked and untracked files), so the worktree gets no mutants/.
#
#   tools/mutation.sh                                  # the whole scope (about an hour on a quiet machine)
#   tools/mutation.sh 'headrank_ir.engine.fusion.*'    # mutants of some modules only (mutmut globs)
#   MUTATION_TESTS="tests/test_fusion.py tests/test_tie_rules.py" tools/mutation.sh 'headrank_ir.engine.fusion.*'
#                                                      # ... against fewer tests (faster; the score is then theirs)
#   KEEP_SCRATCH=1 tools/mutation.sh ...               # keep the scratch copy (printed) to read survivors there:
#                                                      #   cd SCRATCH && python -m mutmut show NAME
#   MUTATION_NOTE="..." tools/mutation.sh ...          # a line on the method, kept in the record
#
# Writes runs/mutation.json (counts, score, command, seconds, what was not killed) and runs/mutation.md.
# Score = (killed + timeout) / (killed + timeout + survived + no tests), as Stryker counts it: a
# mutant that makes a test run past mutmut's CPU limit is detected (here mostly a failing test whose
# torch/numpy report takes longer than the passing run); killed-only is given too. Mutants not run
# (a glob, or an interrupted run) are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PYTHON=${PYTHON:-python}
# the bench's data, as tests/conftest.py finds it from a checkout
export HEADRANK_DATA=${HEADRANK_DATA:-$(cd .. && pwd)/shared/data}
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- headrank_ir tests setup.cfg || echo "+uncommitted")
scratch=$(mktemp -d "${TMPDIR:-/tmp}/headrank-mutation.XXXXXX")
if [ -n "${KEEP_SCRATCH:-}" ]; then
  echo "scratch copy (kept): $scratch" >&2
else
  trap 'rm -rf "$scratch"' EXIT
fi
git ls-files -co --exclude-standard -z | tar -cf - --null -T - | tar -xf - -C "$scratch"
cd "$scratch"
if [ -n "${MUTATION_TESTS:-}" ]; then
  "$PYTHON" - "$MUTATION_TESTS" <<'PY'
import re, sys
from pathlib import Path
cfg = Path("setup.cfg")
tests = "".join(f"\n    {t}" for t in sys.argv[1].split())
text = re.sub(r"(?m)^pytest_add_cli_args_test_selection =(\n    .*)+", "pytest_add_cli_args_test_selection =" + tests, cfg.read_text())
cfg.write_text(text)
PY
fi
started=$(date +%s)
nice -n 19 "$PYTHON" -m mutmut run --max-children 1 "$@" || echo "mutmut run exited with $?" >&2
seconds=$(( $(date +%s) - started ))
"$PYTHON" -m mutmut results --all true > mutants/results.txt
"$PYTHON" - "$seconds" "$*" "${MUTATION_TESTS:-}" "$repo" "$commit" "${MUTATION_NOTE:-}" <<'PY'
import configparser, json, sys
from collections import Counter
from pathlib import Path

seconds, patterns, tests_override, repo, commit, note = int(sys.argv[1]), *sys.argv[2:4], Path(sys.argv[4]), *sys.argv[5:7]
status = {}
for line in Path("mutants/results.txt").read_text().splitlines():
    name, _, state = line.strip().rpartition(": ")
    if name:
        status[name] = state
counts = Counter(status.values())
run = {k: v for k, v in status.items() if v != "not checked"}
judged = sum(counts[k] for k in ("killed", "survived", "timeout", "no tests"))
detected = counts["killed"] + counts["timeout"]
config = configparser.ConfigParser()
config.read("setup.cfg")
command = "tools/mutation.sh" + "".join(f" '{p}'" for p in patterns.split())
if tests_override:
    command = f'MUTATION_TESTS="{tests_override}" ' + command
record = {
    "command": command,
    "commit": commit,  # of the checkout copied at the start
    "scope": [p for p in config.get("mutmut", "only_mutate").split("\n") if p],
    "mutants_selected": patterns or "all in scope",
    "tests": [t for t in config.get("mutmut", "pytest_add_cli_args_test_selection").split("\n") if t],
    "counts": dict(sorted(counts.items())),
    "score": round(detected / judged, 4) if judged else None,
    "score_killed_only": round(counts["killed"] / judged, 4) if judged else None,
    "not_run": counts["not checked"],
    "seconds": seconds,
    "not_killed": sorted(k for k, v in run.items() if v != "killed"),
    "note": note,
}
(repo / "runs").mkdir(exist_ok=True)
(repo / "runs/mutation.json").write_text(json.dumps(record, indent=2) + "\n")
lines = [
    "# Mutation score (mutmut)",
    "",
    f"- command: `{record['command']}` at {record['commit']}, {seconds} s (niced, one worker)",
    f"- mutants: {record['mutants_selected']} (scope in setup.cfg [mutmut]: {', '.join(record['scope'])})",
    f"- tests: {', '.join(record['tests'])}",
    f"- counts: {', '.join(f'{k} {v}' for k, v in record['counts'].items())}",
    f"- score: {record['score']:.1%} detected (killed or timeout) of {judged} run; killed only "
    f"{record['score_killed_only']:.1%}; {record['not_run']} in scope not run"
    if judged
    else "- score: no mutant was run",
    *([f"- note: {note}"] if note else []),
    "",
    "Not killed (`python -m mutmut show NAME` after a run of the same mutants shows the change):",
    "",
    *[f"- {name}: {run[name]}" for name in record["not_killed"]],
]
(repo / "runs/mutation.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines[:7]))
PY
