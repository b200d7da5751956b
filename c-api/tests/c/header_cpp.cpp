// The header compiles as C++ and links: extern "C" guards, no C-only constructs.
#include "xbzrle.h"

#include <cstdio>
#include <cstring>

int main() {
    const char *version = xbzrle_version_string();
    if (std::strcmp(version, XBZRLE_VERSION_STRING) != 0) {
        std::fprintf(stderr, "version %s != %s\n", version, XBZRLE_VERSION_STRING);
        return 1;
    }
    xbzrle_status status = xbzrle_validate(nullptr, 0, 0, nullptr);
    if (status != XBZRLE_ERR_NULL) {
        std::fprintf(stderr, "validate(NULL) gave %d\n", static_cast<int>(status));
        return 1;
    }
    std::printf("header_cpp: C++ build links, %s\n", xbzrle_strerror(status));
    return 0;
}
