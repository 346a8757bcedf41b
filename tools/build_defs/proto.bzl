"""maximus_proto: one line per .proto gives its C++ messages and gRPC stubs.

Debian's protoc and grpc_cpp_plugin run in a genrule; imports are
workspace-relative (`import "proto/common.proto";`), and each imported file
travels with the action through the proto_deps it names.
"""

def maximus_proto(name, proto_deps = [], visibility = None):
    """Generates `<name>_proto_files` and the C++ library `<name>_cc_grpc` from <name>.proto.

    Args:
      name: base name of the .proto file in this package.
      proto_deps: other maximus_proto names (labels without suffix) it imports.
      visibility: visibility of the generated targets.
    """
    src = name + ".proto"
    native.filegroup(
        name = name + "_proto_files",
        srcs = [src] + [d + "_proto_files" for d in proto_deps],
        visibility = visibility,
    )
    outs = [name + ext for ext in [".pb.h", ".pb.cc", ".grpc.pb.h", ".grpc.pb.cc"]]
    native.genrule(
        name = name + "_codegen",
        srcs = [src, ":" + name + "_proto_files"],
        outs = outs,
        cmd = " ".join([
            "/usr/bin/protoc",
            "-I.",
            "-I/usr/include",
            "--cpp_out=$(GENDIR)",
            "--grpc_out=$(GENDIR)",
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
            "$(location %s)" % src,
        ]),
        message = "Generating C++ and gRPC code for %s" % src,
    )
    native.cc_library(
        name = name + "_cc_grpc",
        srcs = [name + ".pb.cc", name + ".grpc.pb.cc"],
        hdrs = [name + ".pb.h", name + ".grpc.pb.h"],
        deps = [d + "_cc_grpc" for d in proto_deps] + [
            "@system//:grpc",
            "@system//:protobuf",
        ],
        visibility = visibility,
    )
