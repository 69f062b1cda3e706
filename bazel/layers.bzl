"""lc_layer: the face a layer shows the layers above it (issue 12).

Bazel checks every #include of a compile against the headers its target may see (the "undeclared
inclusion(s)" error, from the compiler's .d file, with the local spawn strategy too), but a
cc_library passes every header it was built with, srcs and hdrs, direct and transitive, on to
whatever depends on it; visibility only limits who may name a target in its deps. So a layer is
two targets:

    cc_library(name = "internal", ...)   its sources and private headers, and the narrow internal
                                         headers it takes from the layer below; visible to its own
                                         package (and to white-box tests, where a layer says so)
    lc_layer(name = "<layer>", impl = ":internal", api = ["//:headers"])

and the layers above depend on the lc_layer only: it forwards the objects and link options of
`impl` (its whole linking context, transitive deps included) and the compilation context of `api`
alone. An #include of a private header from above then fails: the file exists in the execroot,
but no declared dependency offers it. scripts/check_layers.sh shows it.
"""

def _lc_layer_impl(ctx):
    impl = ctx.attr.impl[CcInfo]
    api = cc_common.merge_cc_infos(cc_infos = [d[CcInfo] for d in ctx.attr.api])
    return [
        CcInfo(
            compilation_context = api.compilation_context,
            linking_context = impl.linking_context,
        ),
        DefaultInfo(files = ctx.attr.impl[DefaultInfo].files),
    ]

lc_layer = rule(
    implementation = _lc_layer_impl,
    attrs = {
        "impl": attr.label(
            mandatory = True,
            providers = [CcInfo],
            doc = "The cc_library that builds the layer (its sources and private headers).",
        ),
        "api": attr.label_list(
            providers = [CcInfo],
            doc = "The headers the layer offers: header-only cc_libraries (//:headers).",
        ),
    },
    doc = "A layer's objects and link options, with no headers but those of api.",
)
