#!/usr/bin/env python3
"""Counts the test targets of a `bazel test` run: passed, failed and skipped.

Bazel 4 reports a gtest target whose every case called GTEST_SKIP as PASSED.
Each target that Bazel reports as passed is looked up in the gtest XML it
wrote (bazel-testlogs/<package>/<name>/test.xml, or one per shard); a target
that ran cases and skipped every one of them counts as skipped.

  test_summary.py BAZEL_TEST_LOG TESTLOGS_DIR

Prints one line per skipped target (`skipped: //pkg:name: reason`), then
`tests: N passed, N failed, N skipped`.
"""

import glob
import os
import re
import sys
import xml.etree.ElementTree as ElementTree

# Bazel's summary lines: "//pkg:name   (cached) PASSED in 0.4s".
_STATUS = re.compile(r"^(//\S+)\s+(?:\(cached\) )?"
                     r"(PASSED|FAILED|TIMEOUT|FLAKY|NO STATUS|INCOMPLETE)")


def target_statuses(log_text):
    """(label, status) for each test target in Bazel's summary, in order."""
    out = []
    for line in log_text.splitlines():
        match = _STATUS.match(line)
        if match:
            out.append((match.group(1), match.group(2)))
    return out


def _xml_files(testlogs, label):
    package, _, name = label[2:].partition(":")
    base = os.path.join(testlogs, package, name)
    files = glob.glob(os.path.join(base, "test.xml"))
    files += glob.glob(os.path.join(base, "shard_*_of_*", "test.xml"))
    files += glob.glob(os.path.join(base, "run_*_of_*", "test.xml"))
    files += glob.glob(os.path.join(base, "run_*_of_*", "shard_*_of_*", "test.xml"))
    return sorted(files)


def skip_reason(xml_paths):
    """The first skip message when every case in the files was skipped, else None.

    Cases gtest did not run (DISABLED_, filtered) do not count either way; no
    cases at all, or an unreadable file, is not a skip.
    """
    ran = 0
    reasons = []
    for path in xml_paths:
        try:
            root = ElementTree.parse(path).getroot()
        except (ElementTree.ParseError, OSError):
            return None
        for case in root.iter("testcase"):
            if case.get("status") == "notrun" or case.get("result") == "suppressed":
                continue
            ran += 1
            skipped = case.find("skipped")
            if case.get("result") != "skipped" and skipped is None:
                return None
            if skipped is not None:
                reasons.append((skipped.get("message") or skipped.text or "").strip())
    if ran == 0:
        return None
    return next((r for r in reasons if r), "every case skipped")


def summarize(log_text, testlogs):
    """Returns (lines to print, passed, failed, skipped)."""
    passed, failed, lines = 0, 0, []
    for label, status in target_statuses(log_text):
        if status != "PASSED":
            failed += 1
            continue
        reason = skip_reason(_xml_files(testlogs, label))
        if reason is None:
            passed += 1
        else:
            # gtest's message may span lines ("file:line: Skipped\nreason").
            lines.append("skipped: %s: %s" % (label, " ".join(reason.split())))
    skipped = len(lines)
    lines.append("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return lines, passed, failed, skipped


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: test_summary.py BAZEL_TEST_LOG TESTLOGS_DIR\n")
        return 2
    with open(argv[1], encoding="utf-8", errors="replace") as log:
        lines, _, _, _ = summarize(log.read(), argv[2])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
