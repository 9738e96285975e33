#!/usr/bin/env bash
# Mutation testing (mutmut) of the scope in setup.cfg [mutmut] only_mutate, against the fast tests
# listed there; not in CI. Niced, one worker: leaves the other cores to their users.
#
#   tools/mutation.sh                                  # the whole scope (about an hour here)
#   tools/mutation.sh 'headrank_ir.engine.fusion.*'    # mutants of some modules only (mutmut globs)
#
# Writes runs/mutation.json (counts, score, command, seconds, survivors) and runs/mutation.md.
# Score = killed / (killed + survived + timeout + no tests); mutants not run are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
# the bench's data, as tests/conftest.py finds it from a checkout (mutmut runs the tests in mutants/)
export HEADRANK_DATA=${HEADRANK_DATA:-$(cd .. && pwd)/shared/data}
rm -rf mutants  # results from another commit must not count
started=$(date +%s)
nice -n 19 "$PYTHON" -m mutmut run --max-children 1 "$@" || echo "mutmut run exited with $?" >&2
seconds=$(( $(date +%s) - started ))
"$PYTHON" -m mutmut results --all true > mutants/results.txt
"$PYTHON" - "$seconds" "$*" <<'PY'
import configparser, json, subprocess, sys
from collections import Counter
from pathlib import Path

seconds, patterns = int(sys.argv[1]), sys.argv[2]
status = {}
for line in Path("mutants/results.txt").read_text().splitlines():
    name, _, state = line.strip().rpartition(": ")
    if name:
        status[name] = state
counts = Counter(status.values())
run = {k: v for k, v in status.items() if v != "not checked"}
judged = sum(counts[k] for k in ("killed", "survived", "timeout", "no tests"))
config = configparser.ConfigParser()
config.read("setup.cfg")
record = {
    "command": "tools/mutation.sh" + (f" {patterns}" if patterns else ""),
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "scope": [p for p in config.get("mutmut", "only_mutate").split("\n") if p],
    "mutants_selected": patterns or "all in scope",
    "counts": dict(sorted(counts.items())),
    "score": round(counts["killed"] / judged, 4) if judged else None,
    "seconds": seconds,
    "not_killed": sorted(k for k, v in run.items() if v != "killed"),
}
Path("runs").mkdir(exist_ok=True)
Path("runs/mutation.json").write_text(json.dumps(record, indent=2) + "\n")
lines = [
    "# Mutation score (mutmut)",
    "",
    f"- command: `{record['command']}` at {record['commit']}, {seconds} s",
    f"- mutants: {record['mutants_selected']}; scope in setup.cfg [mutmut]: {', '.join(record['scope'])}",
    f"- counts: {', '.join(f'{k} {v}' for k, v in record['counts'].items())}",
    f"- score: {record['score']:.1%} killed of {judged} run" if judged else "- score: no mutant was run",
    "",
    "Not killed (`python -m mutmut show NAME` in this checkout after a run shows the change):",
    "",
    *[f"- {name}: {run[name]}" for name in record["not_killed"]],
]
Path("runs/mutation.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines[:6]))
PY
