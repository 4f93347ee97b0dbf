/* serve_auth.c — constant-time API key comparison. */
#include "serve_auth.h"

#include <strings.h>
#include <string.h>

int serve_ct_equal(const char *a, size_t na, const char *b, size_t nb) {
    // every byte of the expected key is visited; a shorter or longer input still costs nb steps
    volatile unsigned char diff = (unsigned char)(na != nb);
    for (size_t i = 0; i < nb; i++) {
        unsigned char x = i < na ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

int serve_auth_ok(const char *header, const char *key, size_t key_len) {
    if (!header) return 0;
    while (*header == ' ') header++;
    if (strncasecmp(header, "Bearer ", 7) != 0) return 0;
    const char *tok = header + 7;
    while (*tok == ' ') tok++;
    size_t n = strlen(tok);
    while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t')) n--;
    return serve_ct_equal(tok, n, key, key_len);
}
