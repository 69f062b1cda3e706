/* The library's version (include/loopcore/version.h): the values the library was built with,
 * which may differ from the headers a program was compiled against. */
#include "loopcore/version.h"

unsigned lc_version(void) { return LC_VERSION_HEX; }

const char *lc_version_string(void) { return LC_VERSION_STRING; }
