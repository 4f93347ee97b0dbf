/* serve_auth.h — API-key check of `ggx serve` (Authorization: Bearer KEY). */
#ifndef GGX_TOOLS_SERVE_AUTH_H
#define GGX_TOOLS_SERVE_AUTH_H

#include <stddef.h>

/* 1 if the Authorization header value is "Bearer <key>" (scheme case-insensitive). The key is
 * compared in time that depends only on the expected key's length, never on where it differs. */
int serve_auth_ok(const char *header, const char *key, size_t key_len);

/* Constant-time equality of a (length na) and the expected b (length nb). */
int serve_ct_equal(const char *a, size_t na, const char *b, size_t nb);

#endif
