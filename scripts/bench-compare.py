#!/usr/bin/env python3
"""Compares two sets of benchmark JSON files (from `flashinfer bench ... --json`).

    python3 scripts/bench-compare.py BASE_DIR NEW_DIR [--limit 3] [--json OUT.json]

Each directory holds one or more rounds (sub-folders r1, r2, ... or the files directly). A timing
is any object with median_us / median_ms / cascade_ms; it is keyed by file name and workload. For
each key, the best median over rounds (the least disturbed run) is compared. Prints a table and
exits 1 when a new timing is more than --limit percent slower than the base (copy and jit
timings are shown, not gated: one is the ceiling, the other compile time).
"""
import json, os, sys

def timings(obj, prefix, out):
    if isinstance(obj, dict):
        key = prefix + ("/" + str(obj["workload"]) if "workload" in obj else "")
        for field, scale in (("median_us", 1.0), ("median_ms", 1000.0), ("cascade_ms", 1000.0)):
            if field in obj and isinstance(obj[field], (int, float)):
                out.setdefault(key, []).append(obj[field] * scale)
        for name, value in obj.items():
            if isinstance(value, (list, dict)):
                timings(value, key, out)
    elif isinstance(obj, list):
        for item in obj:
            timings(item, prefix, out)

def collect(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".json"):
                with open(os.path.join(dirpath, f)) as h:
                    timings(json.load(h), f[:-5], out)
    return {k: min(v) for k, v in out.items()}

def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    limit = float(argv[argv.index("--limit") + 1]) if "--limit" in argv else 3.0
    if "--limit" in argv:
        args.remove(argv[argv.index("--limit") + 1])
    json_out = argv[argv.index("--json") + 1] if "--json" in argv else None
    if json_out:
        args.remove(json_out)
    if len(args) != 2:
        print(__doc__)
        return 2
    base, new = collect(args[0]), collect(args[1])
    rows, worst = [], 0.0
    print(f"{'timing':<44} {'base us':>10} {'new us':>10} {'change':>8}")
    for key in sorted(set(base) | set(new)):
        b, n = base.get(key), new.get(key)
        if b is None or n is None:
            print(f"{key:<44} {b if b else '-':>10} {n if n else '-':>10}     (missing)")
            continue
        change = (n / b - 1) * 100
        gated = not key.startswith(("copy", "jit"))  # the ceiling and compile times: shown only
        if gated:
            worst = max(worst, change)
        rows.append({"timing": key, "base_us": b, "new_us": n, "change_percent": change})
        flag = "  SLOWER" if gated and change > limit else ("" if gated else "  (not gated)")
        print(f"{key:<44} {b:>10.1f} {n:>10.1f} {change:>+7.2f}%{flag}")
    print(f"worst change {worst:+.2f}% (limit +{limit}%)")
    if json_out:
        with open(json_out, "w") as h:
            json.dump({"limit_percent": limit, "worst_change_percent": worst, "rows": rows}, h, indent=1)
    return 1 if worst > limit else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
