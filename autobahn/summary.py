#!/usr/bin/env python3
"""Summarise an Autobahn testsuite report (index.json) and gate on it.

    summary.py INDEX LABEL [MIN_CASES]

Prints per-section totals, every case that is not strictly OK, and a closing
`LABEL: N passed, N failed` line. A case passes only if both its behavior and its
behaviorClose are OK or INFORMATIONAL: NON-STRICT, UNIMPLEMENTED (what a failed
permessage-deflate negotiation turns 12.x/13.x into) and every failure fail it.
Cases short of MIN_CASES (default 1) count as failed too, so a run that stopped early
or lost a section cannot pass. Exits 1 if anything failed.
"""
import json
import sys
from collections import OrderedDict

PASS = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(p) for p in case_id.split("."))


def load(index_path):
    """The report's cases as {agent: {case_id: result}}, or None (with a message)."""
    try:
        with open(index_path) as f:
            index = json.load(f)
    except FileNotFoundError:
        print("%s: no report: the run stopped before writing it (the wstest and "
              "autobahn_client logs are in target/autobahn/)" % index_path)
        return None
    except ValueError as e:
        print("%s: not a valid report: %s" % (index_path, e))
        return None
    if not isinstance(index, dict) or not all(isinstance(c, dict) for c in index.values()):
        print("%s: not a valid report: expected {agent: {case: result}}" % index_path)
        return None
    return index


def main(index_path, label, min_cases=1):
    index = load(index_path)
    passed = failed = 0
    sections = OrderedDict()
    notes = []
    for agent, cases in (index or {}).items():
        for case_id in sorted(cases, key=case_key):
            result = cases[case_id]
            behavior = result.get("behavior")
            close = result.get("behaviorClose")
            section = case_id.split(".")[0]
            counts = sections.setdefault(section, [0, 0])
            ok = behavior in PASS and close in PASS
            if ok:
                passed += 1
                counts[0] += 1
            else:
                failed += 1
                counts[1] += 1
            if behavior != "OK" or close != "OK":
                notes.append("  %s %s: %s (close %s)%s"
                             % (agent, case_id, behavior, close, "" if ok else "  FAILED"))
    print("Autobahn %s: per section (passed / failed)" % label)
    for section in sorted(sections, key=int):
        p, f = sections[section]
        print("  %-3s %4d / %d" % (section, p, f))
    if notes:
        print("Not strictly OK (OK and INFORMATIONAL pass, anything else fails):")
        print("\n".join(notes))
    ran = passed + failed
    if ran < min_cases:
        print("%d cases ran, at least %d expected: the %d missing count as failed"
              % (ran, min_cases, min_cases - ran))
        failed += min_cases - ran
    print("%s: %d passed, %d failed" % (label, passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: summary.py INDEX LABEL [MIN_CASES]")
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 1))
