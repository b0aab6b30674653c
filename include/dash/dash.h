/* dashnas: the C ABI.
 *
 * Conventions (they hold for every function added to this header):
 *  - Names are dash_<object>_<verb>; the handle comes first, out-parameters last.
 *  - Functions that can fail return dash_status; DASH_OK is 0. On failure,
 *    out-parameters are untouched and dash_last_error() says what went wrong.
 *  - No C++ exception ever crosses this boundary.
 *  - Memory returned by the library is freed by the matching dash_ function.
 *
 * This header is C99 and self-contained. The entry points for tasks, search,
 * retraining and inference are being added on top of these conventions.
 */
#ifndef DASH_DASH_H
#define DASH_DASH_H

#ifdef __cplusplus
extern "C" {
#endif

#define DASH_VERSION_MAJOR 0
#define DASH_VERSION_MINOR 1
#define DASH_VERSION_PATCH 0
#define DASH_VERSION_STRING "0.1.0"
/* Bumped whenever a released function or struct changes incompatibly. */
#define DASH_ABI_VERSION 1

#if defined(DASH_BUILDING_LIBRARY)
#define DASH_API __attribute__((visibility("default")))
#else
#define DASH_API
#endif

/* The library's version, "MAJOR.MINOR.PATCH". Static storage: never free it. */
DASH_API const char *dash_version(void);

/* DASH_ABI_VERSION of the library actually loaded; compare it with the macro
 * to detect a header/library mismatch. */
DASH_API int dash_abi_version(void);

#ifdef __cplusplus
}
#endif

#endif /* DASH_DASH_H */
