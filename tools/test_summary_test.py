#!/usr/bin/env python3
"""Tests test_summary.py on Bazel summaries and gtest XML written here."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_summary  # noqa: E402

# The shapes gtest 1.12 writes: a skipped case has result="skipped" and a
# <skipped> element whose message is "file:line\nreason".
SKIPPED_CASE = """<testcase name="Skips" status="run" result="skipped" classname="GpuTest">
  <skipped message="kernels/a_test.cc:20&#x0A;no usable GPU: driver too old"><![CDATA[kernels/a_test.cc:20
no usable GPU: driver too old]]></skipped>
</testcase>"""
PASSED_CASE = '<testcase name="Passes" status="run" result="completed" classname="T"/>'
DISABLED_CASE = '<testcase name="DISABLED_X" status="notrun" result="suppressed" classname="T"/>'
ELEMENT_ONLY_SKIP = '<testcase name="Old" status="run" classname="T"><skipped/></testcase>'


def suite(*cases):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="T">%s'
            '</testsuite></testsuites>\n' % "".join(cases))


class TestSummaryTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.testlogs = self.dir.name

    def tearDown(self):
        self.dir.cleanup()

    def write(self, label, xml, shard=None):
        package, _, name = label[2:].partition(":")
        path = os.path.join(self.testlogs, package, name)
        if shard:
            path = os.path.join(path, shard)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "test.xml"), "w") as f:
            f.write(xml)

    def test_counts_an_all_skipped_target_as_skipped(self):
        self.write("//kernels:gpu_test", suite(SKIPPED_CASE, SKIPPED_CASE))
        self.write("//kernels:cpu_test", suite(PASSED_CASE))
        self.write("//kernels:mixed_test", suite(PASSED_CASE, SKIPPED_CASE))
        log = ("//kernels:cpu_test                          (cached) PASSED in 0.1s\n"
               "//kernels:gpu_test                                   PASSED in 0.3s\n"
               "//kernels:mixed_test                                 PASSED in 0.2s\n"
               "//kernels:broken_test                                FAILED in 1.0s\n"
               "//kernels:slow_test                                 TIMEOUT in 60.0s\n"
               "//kernels:unbuilt_test                     FAILED TO BUILD\n"
               "//kernels:other_test                              NO STATUS\n")
        lines, passed, failed, skipped = test_summary.summarize(log, self.testlogs)
        self.assertEqual((passed, failed, skipped), (2, 4, 1))
        self.assertEqual(lines, [
            "skipped: //kernels:gpu_test: kernels/a_test.cc:20 no usable GPU: driver too old",
            "tests: 2 passed, 4 failed, 1 skipped",
        ])

    def test_disabled_cases_are_neither_run_nor_skipped(self):
        self.write("//a:skips", suite(SKIPPED_CASE, DISABLED_CASE))
        self.write("//a:none_run", suite(DISABLED_CASE))
        log = "//a:skips  PASSED in 0.1s\n//a:none_run  PASSED in 0.1s\n"
        _, passed, _, skipped = test_summary.summarize(log, self.testlogs)
        self.assertEqual((passed, skipped), (1, 1))

    def test_a_skipped_element_without_result_attribute_is_a_skip(self):
        self.write("//a:old_gtest", suite(ELEMENT_ONLY_SKIP))
        lines, _, _, skipped = test_summary.summarize("//a:old_gtest  PASSED in 0.1s\n",
                                                      self.testlogs)
        self.assertEqual(skipped, 1)
        self.assertEqual(lines[0], "skipped: //a:old_gtest: every case skipped")

    def test_every_shard_must_skip(self):
        self.write("//a:sharded", suite(SKIPPED_CASE), shard="shard_1_of_2")
        self.write("//a:sharded", suite(PASSED_CASE), shard="shard_2_of_2")
        self.write("//a:all_shards_skip", suite(SKIPPED_CASE), shard="shard_1_of_2")
        self.write("//a:all_shards_skip", suite(SKIPPED_CASE), shard="shard_2_of_2")
        log = "//a:sharded  PASSED in 0.1s\n//a:all_shards_skip  PASSED in 0.1s\n"
        _, passed, _, skipped = test_summary.summarize(log, self.testlogs)
        self.assertEqual((passed, skipped), (1, 1))

    def test_missing_or_unreadable_xml_counts_as_passed(self):
        self.write("//a:garbled", "<testsuites><testsuite")
        log = "//a:garbled  PASSED in 0.1s\n//a:no_xml  PASSED in 0.1s\n"
        lines, passed, failed, skipped = test_summary.summarize(log, self.testlogs)
        self.assertEqual((passed, failed, skipped), (2, 0, 0))
        self.assertEqual(lines, ["tests: 2 passed, 0 failed, 0 skipped"])

    def test_ignores_lines_that_are_not_target_summaries(self):
        log = ("INFO: Build completed successfully, 12 total actions\n"
               "Executed 0 out of 1 test: 1 test passes.\n"
               "  //a:indented  PASSED in 0.1s\n")
        _, passed, failed, skipped = test_summary.summarize(log, self.testlogs)
        self.assertEqual((passed, failed, skipped), (0, 0, 0))


if __name__ == "__main__":
    unittest.main()
