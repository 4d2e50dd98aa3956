#!/usr/bin/env python3
"""Summarise an Autobahn testsuite report directory (index.json).

Prints per-section totals, every case that is not strictly OK, and a closing
`autobahn: N passed, N failed` line, where passed = OK, NON-STRICT or INFORMATIONAL.
Exits 1 if any case failed or if no case ran.
"""
import json
import sys
from collections import OrderedDict

PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def main(index_path, label):
    with open(index_path) as f:
        index = json.load(f)
    passed = failed = 0
    sections = OrderedDict()
    notes = []
    for agent, cases in index.items():
        for case_id in sorted(cases, key=case_key):
            result = cases[case_id]
            behavior = result.get("behavior")
            close = result.get("behaviorClose")
            ok = behavior in PASS and close in PASS
            section = case_id.split(".")[0]
            counts = sections.setdefault(section, [0, 0, 0])
            if behavior == "UNIMPLEMENTED":
                counts[2] += 1
                continue
            if ok:
                passed += 1
                counts[0] += 1
            else:
                failed += 1
                counts[1] += 1
            if behavior != "OK" or close != "OK":
                notes.append("  %s %s: %s (close %s)" % (agent, case_id, behavior, close))
    print("Autobahn %s: per section (passed / failed / unimplemented)" % label)
    for section in sorted(sections, key=int):
        p, f, u = sections[section]
        print("  %-3s %4d / %d / %d" % (section, p, f, u))
    if notes:
        print("Not strictly OK:")
        print("\n".join(notes))
    print("%s: %d passed, %d failed" % (label, passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
