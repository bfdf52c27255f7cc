#!/usr/bin/env bash
# Replays the evasion corpus (tests/corpora/evasion/payloads.tsv through every encoding and
# placement, src/evasion.rs) with the embedded rules and fails when the attacks caught or the
# look-alikes passed, overall or for one encoding or placement, drop under .ci/waf-floors.toml's
# [evasion] floors.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/portcullis"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
"$BIN" replay --json tests/corpora/evasion/payloads.tsv > "$OUT"
python3 - "$OUT" <<'PY'
import collections, json, sys, tomllib
report = json.load(open(sys.argv[1]))
floors = tomllib.load(open(".ci/waf-floors.toml", "rb"))["evasion"]
sums = collections.defaultdict(lambda: [0, 0, 0, 0])  # attacks, caught, benign, allowed
for category, s in report["categories"].items():
    encoding, placement, _ = category.split("/")
    for key in ("overall", f"encoding.{encoding}", f"placement.{placement}"):
        t = sums[key]
        t[0] += s["attacks"]; t[1] += s["caught"]; t[2] += s["benign"]; t[3] += s["allowed"]
failed = 0
for key, (attacks, caught, benign, allowed) in sorted(sums.items()):
    tpr, tnr = caught / attacks, allowed / benign
    want_tpr = floors["tpr"].get(key.split(".")[-1] if key != "overall" else "overall", floors["tpr"]["overall"])
    ok = tpr >= want_tpr and tnr >= floors["tnr"]
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {key:<28} TPR {tpr:.4f} (floor {want_tpr:.2f})  TNR {tnr:.4f} (floor {floors['tnr']:.3f})")
print(f"evasion corpus: {len(sums)} slices, {failed} under their floors")
sys.exit(1 if failed else 0)
PY
