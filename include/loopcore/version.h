/* loopcore's version: semantic versioning (MAJOR.MINOR.PATCH). The macros say which headers a
 * program was compiled against; lc_version() and lc_version_string() which library it runs
 * with (the shared library may be newer: a higher MINOR or PATCH with the same MAJOR keeps every
 * function and type the program uses). The shared library's soname carries MAJOR
 * (libloopcore.so.MAJOR). CHANGELOG.md says what each release changed. */
#ifndef LOOPCORE_VERSION_H
#define LOOPCORE_VERSION_H

#define LC_VERSION_MAJOR 0
#define LC_VERSION_MINOR 1
#define LC_VERSION_PATCH 0

#define LC__VERSION_STR2(x) #x
#define LC__VERSION_STR(x) LC__VERSION_STR2(x)
/** "MAJOR.MINOR.PATCH" of the headers. */
#define LC_VERSION_STRING                                                                          \
    LC__VERSION_STR(LC_VERSION_MAJOR)                                                              \
    "." LC__VERSION_STR(LC_VERSION_MINOR) "." LC__VERSION_STR(LC_VERSION_PATCH)
/** The headers' version as one number, MAJOR << 16 | MINOR << 8 | PATCH (as libuv's
 *  UV_VERSION_HEX): compare with lc_version(). */
#define LC_VERSION_HEX ((LC_VERSION_MAJOR << 16) | (LC_VERSION_MINOR << 8) | LC_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/** The library's version, MAJOR << 16 | MINOR << 8 | PATCH. */
unsigned lc_version(void);

/** The library's version, "MAJOR.MINOR.PATCH" (static storage). */
const char *lc_version_string(void);

#ifdef __cplusplus
}
#endif

#endif
