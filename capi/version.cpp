#include "dash/dash.h"

extern "C" {

const char *dash_version(void) { return DASH_VERSION_STRING; }

int dash_abi_version(void) { return DASH_ABI_VERSION; }

}  // extern "C"
