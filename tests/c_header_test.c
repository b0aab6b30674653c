/* The public header compiles alone as strict C99, and the library loaded
 * matches the header it was built with. */
#include "dash/dash.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  if (strcmp(dash_version(), DASH_VERSION_STRING) != 0) {
    fprintf(stderr, "library version %s, header %s\n", dash_version(), DASH_VERSION_STRING);
    return 1;
  }
  if (dash_abi_version() != DASH_ABI_VERSION) {
    fprintf(stderr, "library ABI %d, header %d\n", dash_abi_version(), DASH_ABI_VERSION);
    return 1;
  }
  printf("dashnas %s, ABI %d\n", dash_version(), dash_abi_version());
  return 0;
}
