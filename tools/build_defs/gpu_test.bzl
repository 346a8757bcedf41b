"""gpu_cc_test: a cc_test of GPU code.

Tagged "gpu", the tag by which tools/device/pack.sh finds the binaries to pack
for a GPU machine, and linked with the GPU probe (MAXIMUS_SKIP_WITHOUT_GPU in
kernels/gpu_test_util.h) and gtest_main, so that it skips with the reason on a
machine without a usable GPU and fails there under MAXIMUS_REQUIRE_GPU=1.
"""

GPU_TEST_DEPS = [
    "//kernels:gpu_test_util",
    "@system//:gtest",
    "@system//:gtest_main",
]

def gpu_cc_test(name, srcs, deps = [], tags = [], size = "small", **kwargs):
    """A cc_test that needs a GPU.

    Args:
      name: target name.
      srcs: test sources.
      deps: dependencies besides the GPU probe and gtest.
      tags: tags besides "gpu".
      size: test size.
      **kwargs: passed to the cc_test (args, data, env, timeout ...).
    """
    native.cc_test(
        name = name,
        size = size,
        srcs = srcs,
        tags = tags + [t for t in ["gpu"] if t not in tags],
        deps = deps + [d for d in GPU_TEST_DEPS if d not in deps],
        **kwargs
    )
