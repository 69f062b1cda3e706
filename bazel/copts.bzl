"""Compiler and linker options shared by every loopcore target."""

LC_COPTS = [
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wno-unused-parameter",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-D_GNU_SOURCE",
    # lc_call_t keeps its private state in an opaque array of the public struct (the libuv way).
    "-fno-strict-aliasing",
]

# System libraries from Debian's packages.
LC_LINKOPTS = ["-luv", "-lssl", "-lcrypto", "-lpthread", "-lm"]

# The binaries (examples, benchmarks, servers) link jemalloc.
LC_BIN_LINKOPTS = select({
    "//bazel:asan": [],
    "//bazel:tsan": [],
    "//conditions:default": ["-ljemalloc"],
})

LC_TEST_LINKOPTS = ["-lcmocka"]
