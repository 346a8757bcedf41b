"""cuda_library: CUDA C++ sources compiled by nvcc into an ordinary C++ library.

nvcc compiles each .cu file to an object with sm_90a machine code (wgmma and
other Hopper-only instructions) plus compute_90 PTX for later GPUs; the
objects are archived by Bazel's own C++ toolchain and linked like any
cc_library, with the static CUDA runtime.
"""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")

NVCC_ARCH_FLAGS = [
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_90,code=compute_90",
]

def _include_flags(compilation_context, bin_dir, genfiles_dir):
    flags = ["-I.", "-I" + bin_dir, "-I" + genfiles_dir]
    for path in compilation_context.quote_includes.to_list():
        flags.append("-I" + path)
    for path in compilation_context.includes.to_list():
        flags.append("-I" + path)
    for path in compilation_context.system_includes.to_list():
        flags += ["-isystem", path]
    for define in compilation_context.defines.to_list():
        flags.append("-D" + define)
    return flags

def _cuda_objects_impl(ctx):
    cc_toolchain = find_cpp_toolchain(ctx)
    feature_configuration = cc_common.configure_features(
        ctx = ctx,
        cc_toolchain = cc_toolchain,
        requested_features = ctx.features,
        unsupported_features = ctx.disabled_features,
    )
    deps_info = cc_common.merge_cc_infos(cc_infos = [d[CcInfo] for d in ctx.attr.deps])
    compilation_context = deps_info.compilation_context
    common_flags = NVCC_ARCH_FLAGS + [
        "-O3",
        "-std=c++17",
        "-lineinfo",
        "--expt-relaxed-constexpr",
        "-Xcompiler",
        "-fPIC",
        "-ccbin",
        cc_toolchain.compiler_executable,
    ] + _include_flags(compilation_context, ctx.bin_dir.path, ctx.genfiles_dir.path) + ctx.attr.nvcc_flags

    objects = []
    for src in ctx.files.srcs:
        obj = ctx.actions.declare_file("_nvcc/%s/%s.o" % (ctx.label.name, src.basename[:-len(".cu")]))
        ctx.actions.run(
            executable = ctx.executable._nvcc,
            arguments = common_flags + ["-c", src.path, "-o", obj.path],
            inputs = depset(
                [src] + ctx.files.hdrs,
                transitive = [compilation_context.headers, depset(ctx.files._nvcc_files)],
            ),
            outputs = [obj],
            mnemonic = "NvccCompile",
            progress_message = "Compiling CUDA %s" % src.short_path,
            use_default_shell_env = True,
        )
        objects.append(obj)

    compilation_outputs = cc_common.create_compilation_outputs(
        objects = depset(objects),
        pic_objects = depset(objects),
    )
    linking_context, _ = cc_common.create_linking_context_from_compilation_outputs(
        actions = ctx.actions,
        feature_configuration = feature_configuration,
        cc_toolchain = cc_toolchain,
        compilation_outputs = compilation_outputs,
        linking_contexts = [deps_info.linking_context],
        name = ctx.label.name,
    )
    return [
        DefaultInfo(files = depset(objects)),
        CcInfo(linking_context = linking_context),
    ]

_cuda_objects = rule(
    implementation = _cuda_objects_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cu"]),
        "hdrs": attr.label_list(allow_files = [".h", ".cuh"]),
        "deps": attr.label_list(providers = [CcInfo]),
        "nvcc_flags": attr.string_list(),
        "_nvcc": attr.label(
            default = "@cuda//:bin/nvcc",
            executable = True,
            allow_single_file = True,
            cfg = "host",
        ),
        "_nvcc_files": attr.label(default = "@cuda//:nvcc_files"),
        "_cc_toolchain": attr.label(default = "@bazel_tools//tools/cpp:current_cc_toolchain"),
    },
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
    fragments = ["cpp"],
)

def cuda_library(name, srcs, hdrs = [], deps = [], nvcc_flags = [], **kwargs):
    """A cc_library whose .cu sources nvcc compiles.

    Args:
      name: target name.
      srcs: .cu files (and .cuh headers private to them).
      hdrs: public headers, shared with C++ dependants.
      deps: cc_library dependencies (headers visible to nvcc too).
      nvcc_flags: extra nvcc flags.
      **kwargs: passed to the cc_library (visibility, tags, testonly ...).
    """
    cu_srcs = [s for s in srcs if s.endswith(".cu")]
    private_hdrs = [s for s in srcs if not s.endswith(".cu")]
    _cuda_objects(
        name = name + "_nvcc",
        srcs = cu_srcs,
        hdrs = hdrs + private_hdrs,
        deps = deps + ["@cuda//:headers"],
        nvcc_flags = nvcc_flags,
        testonly = kwargs.get("testonly", False),
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        hdrs = hdrs,
        deps = deps + [
            ":" + name + "_nvcc",
            "@cuda//:cudart_static",
        ],
        **kwargs
    )
