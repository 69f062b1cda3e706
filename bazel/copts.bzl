"""Compiler and linker options shared by every loopcore target."""

# Hardening (issue 11). The flags that suit every object, ours and llhttp's alike, are set once
# for the whole build in .bazelrc: -fstack-protector-strong, -fstack-clash-protection,
# -fcf-protection, and on every link -Wl,-z,relro,-z,now (full RELRO) and -Wl,-z,noexecstack.
# Here are the ones that depend on the compilation mode or on the kind of target:
#
# _FORTIFY_SOURCE needs optimization (glibc warns, and -Werror fails, at -O0), and conflicts with
# the sanitizers' interceptors. Bazel's toolchain passes -U_FORTIFY_SOURCE, and in -c opt
# -D_FORTIFY_SOURCE=1, before these copts, so level 3 is set with an -U first (a plain
# redefinition warns). It is on where the build optimizes without a sanitizer: -c opt, which
# builds every shipped binary (the demo, the benchmarks, CI's build). The default fastbuild (-O0,
# the tests) and -c dbg stay unfortified; the tests' memory checking is --config=asan's job.
# A select that comes later wins: the sanitizers and --config=nohardening undefine it again.
_FORTIFY_COPTS = select({
    "//bazel:opt": [
        "-U_FORTIFY_SOURCE",
        "-D_FORTIFY_SOURCE=3",
    ],
    "//conditions:default": [],
}) + select({
    "//bazel:asan": ["-U_FORTIFY_SOURCE"],
    "//bazel:tsan": ["-U_FORTIFY_SOURCE"],
    "//conditions:default": [],
}) + select({
    "//bazel:nohardening": ["-U_FORTIFY_SOURCE"],
    "//conditions:default": [],
})

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
] + _FORTIFY_COPTS

# The library's own sources (the engine, executor and threadsafe layers): symbols are hidden by
# default, and the public headers make what they declare visible again (#pragma GCC visibility
# push(default) in each). So libloopcore.so exports the API and nothing else even before its
# version script (//bazel:loopcore_map), and calls between the library's own functions need no
# PLT. The lc__ functions the layers share are hidden too: the tests link the layers statically
# (--dynamic_mode=off in .bazelrc), never through per-layer shared objects.
LC_LIB_COPTS = LC_COPTS + ["-fvisibility=hidden"]

# PIE: only an executable's own sources may be compiled -fPIE. The libraries' objects also go
# into the shared libraries that Bazel links the tests against (their .pic.o, built with -fPIC),
# and a later -fPIE would turn those into code that cannot be linked into a .so; their non-PIC
# objects, which the binaries link, are PIE anyway (Debian's gcc defaults to -fPIE, and -pie
# below would fail the link if they were not). -pie likewise goes on executables' links only: on
# a shared library's link it overrides -shared. --config=nohardening keeps PIE, the compiler's
# default here (see .bazelrc).
_PIE_COPTS = select({
    "//bazel:nohardening": [],
    "//conditions:default": ["-fPIE"],
})

LC_PIE_LINKOPTS = select({
    "//bazel:nohardening": [],
    "//conditions:default": ["-pie"],
})

# copts of the cc_binary targets (benchmarks, servers, lcbench, examples).
LC_BIN_COPTS = LC_COPTS + _PIE_COPTS

# System libraries from Debian's packages.
LC_LINKOPTS = ["-luv", "-lssl", "-lcrypto", "-lpthread", "-lm"]

# The binaries (examples, benchmarks, servers) link jemalloc, and are PIE.
LC_BIN_LINKOPTS = select({
    "//bazel:asan": [],
    "//bazel:tsan": [],
    "//conditions:default": ["-ljemalloc"],
}) + LC_PIE_LINKOPTS

LC_TEST_LINKOPTS = ["-lcmocka"]
