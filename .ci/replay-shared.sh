#!/usr/bin/env bash
# Replays ../shared/corpora through `portcullis replay --json` and fails when a measured rate is
# under the floors in .ci/waf-floors.toml. Skips (exit 0) when the corpora are not present.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPORA="${CORPORA:-../shared/corpora}"
if [ ! -d "$CORPORA" ]; then
  echo "replay-shared: $CORPORA not found, skipping"
  exit 0
fi
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/portcullis"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$BIN" replay --json "$CORPORA/blazehttp-half.jsonl" > "$OUT/blazehttp.json"
"$BIN" replay --json --max-rule-pl 2 --categories 930,931,932,933,934,941,942,943,944 "$CORPORA/crs-regression" > "$OUT/crs.json"
"$BIN" replay --json "$CORPORA/libinjection/data" > "$OUT/libinjection.json" 2>/dev/null
"$BIN" replay --json "$CORPORA/web-browsing-benign.jsonl" > "$OUT/web.json"
"$BIN" replay --json --paranoia 2 "$CORPORA/web-browsing-benign.jsonl" > "$OUT/web_pl2.json"
python3 - "$OUT" <<'PY'
import json, sys, tomllib
out = sys.argv[1]
floors = tomllib.load(open(".ci/waf-floors.toml", "rb"))
def load(n): return json.load(open(f"{out}/{n}.json"))
blaze, crs, li = load("blazehttp"), load("crs"), load("libinjection")
web, web_pl2 = load("web"), load("web_pl2")
measured = {
    ("blazehttp", "tpr"): blaze["overall"]["tpr"],
    ("blazehttp", "tnr"): blaze["overall"]["tnr"],
    ("crs", "tpr"): crs["overall"]["tpr"],
    ("libinjection_sqli", "tpr"): li["categories"]["sqli"]["tpr"],
    ("libinjection_xss", "tpr"): li["categories"]["xss"]["tpr"],
    ("libinjection_fp", "tnr"): li["categories"]["false_positives"]["tnr"],
    ("web_browsing", "tnr"): web["overall"]["tnr"],
    ("web_browsing_pl2", "tnr"): web_pl2["overall"]["tnr"],
}
# No single rule may block more than a set share of real traffic at PL1 (a regression names it).
benign = web["overall"]["benign"] or 1
rule_blocks = [(rid, n, fam) for fam, f in web["benign_blocked_by_family"].items() for rid, n in f["rules"].items()]
if rule_blocks:
    rid, n, fam = max(rule_blocks, key=lambda r: r[1])
    measured[("web_browsing", "max_rule_share")] = -n / benign
    print(f"web_browsing: the rule that blocks most is {rid} ({fam}): {n} of {benign} requests")
failed = 0
passed = 0
for (sec, key), val in measured.items():
    floor = floors.get(sec, {}).get(key)
    if floor is None:
        continue
    ok = val is not None and val >= floor
    if key.startswith("max_"):
        val, floor = -val, -floor
    print(f"{'ok  ' if ok else 'FAIL'} {sec}.{key}: measured {val:.5f} floor {floor:.5f}")
    if ok:
        passed += 1
    else:
        failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
