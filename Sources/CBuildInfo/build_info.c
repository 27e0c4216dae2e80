#include "cartekit_build_info.h"

#ifndef CARTEKIT_BUILD_COMMIT
#define CARTEKIT_BUILD_COMMIT "unknown"
#endif

const char *cartekit_build_commit(void) { return CARTEKIT_BUILD_COMMIT; }
