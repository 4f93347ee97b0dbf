/* fuzz_tokenizer.c — libFuzzer target over the tokenizer with the tiny model's tokenizer.json
 * (loaded from $GGX_TEST_DATA/xlstm-tiny/ or tests/data/xlstm-tiny/ relative to the cwd).
 *
 * The first input byte picks a mode:
 *   0..127   encode the rest as text. Valid UTF-8 must encode, and decode (keeping special tokens)
 *            must give back the text with its pieces between special tokens NFC-normalized
 *            (HF normalizes per piece); the streaming decoder must agree. Invalid UTF-8 must be
 *            rejected with GGX_ERR_INVALID_ARG.
 *   128..191 decode the rest as 16-bit ids (some out of range): the result is valid UTF-8 and the
 *            streaming decoder, fed one id at a time, produces the same text.
 *   192..255 load the rest as a tokenizer.json: any status, no crash, no leak; if it loads,
 *            encode a fixed string.
 * A property violation aborts (__builtin_trap); leaks are caught by LeakSanitizer.
 *
 * The tokenizer sources are compiled into this target (not taken from ggxcore) so that they get
 * the fuzzer's coverage instrumentation and AddressSanitizer checks. */
#include "../../ggx/tokenizer_map.c"
#include "../../ggx/tokenizer_bpe.c"
#include "../../ggx/tokenizer_encode.c"
#include "../../ggx/tokenizer_decode.c"
#include "../../ggx/tokenizer_load.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ggx_tokenizer *g_tok;

static void load_once(void) {
    if (g_tok) return;
    char path[4096];
    const char *root = getenv("GGX_TEST_DATA");
    snprintf(path, sizeof path, "%s/xlstm-tiny/tokenizer.json", root ? root : "tests/data");
    if (ggx_tokenizer_load(path, &g_tok) != GGX_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (run from the repository root or set GGX_TEST_DATA)\n",
                path, ggx_last_error());
        abort();
    }
}

static bool valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t adv;
        if (tok_utf8_scan(s + i, n - i, &adv) != TOK_UTF8_OK) return false;
        i += adv;
    }
    return true;
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_tokenizer: property failed: %s (line %d)\n", #c, __LINE__);      \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

/* Streaming decode of ids; compares with `want` (full decode). */
static void check_stream(const int32_t *ids, size_t n, const char *want, size_t want_len) {
    ggx_detok *d;
    CHECK(ggx_detok_create(g_tok, &d) == GGX_OK);
    size_t cap = ggx_tokenizer_detok_bufsize(g_tok), pos = 0;
    char *buf = malloc(cap);
    CHECK(buf);
    for (size_t i = 0; i <= n; i++) {
        size_t got = 0;
        ggx_status st = i < n ? ggx_detok_push(d, ids[i], buf, cap, &got) : ggx_detok_flush(d, buf, cap, &got);
        CHECK(st == GGX_OK);
        CHECK(valid_utf8((const uint8_t *)buf, got) && buf[got] == 0);
        CHECK(pos + got <= want_len && !memcmp(want + pos, buf, got));
        pos += got;
    }
    CHECK(pos == want_len);
    free(buf);
    ggx_detok_free(d);
}

/* Expected decode of encode(text): split on the special tokens' text, NFC the other pieces. */
static char *expected_roundtrip(const uint8_t *s, size_t n, size_t *out_len) {
    tok_buf out = {0};
    CHECK(tok_buf_append(&out, "", 0) == GGX_OK);
    size_t start = 0, i = 0;
    while (i <= n) {
        size_t mlen = 0;
        for (int k = 0; k < g_tok->n_added && i < n; k++) {
            const tok_added *a = &g_tok->added[k];
            if (a->len <= n - i && !memcmp(s + i, a->content, a->len) && a->len > mlen) mlen = a->len;
        }
        if (mlen || i == n) {
            if (i > start) {
                char *nfc;
                size_t nl;
                CHECK(tok_nfc((const char *)s + start, i - start, &nfc, &nl) == GGX_OK);
                CHECK(tok_buf_append(&out, nfc, nl) == GGX_OK);
                free(nfc);
            }
            if (i == n) break;
            CHECK(tok_buf_append(&out, s + i, mlen) == GGX_OK);
            i += mlen;
            start = i;
        } else {
            i++;
        }
    }
    *out_len = out.n;
    return out.v;
}

static void fuzz_encode(const uint8_t *s, size_t n) {
    size_t cnt = 0;
    ggx_status st = ggx_tokenizer_encode(g_tok, (const char *)s, n, NULL, 0, &cnt);
    if (!valid_utf8(s, n)) {
        CHECK(st == GGX_ERR_INVALID_ARG && cnt == 0);
        return;
    }
    CHECK(st == GGX_OK || (st == GGX_ERR_INVALID_ARG && cnt > 0));
    int32_t *ids = malloc((cnt + 1) * sizeof *ids);
    CHECK(ids);
    size_t cnt2 = 0;
    CHECK(ggx_tokenizer_encode(g_tok, (const char *)s, n, ids, cnt, &cnt2) == GGX_OK && cnt2 == cnt);
    for (size_t i = 0; i < cnt; i++) CHECK(ids[i] >= 0 && ids[i] < g_tok->n_vocab && g_tok->has_token[ids[i]]);
    char *dec;
    size_t dlen;
    CHECK(ggx_tokenizer_decode_ex(g_tok, ids, cnt, 1, &dec, &dlen) == GGX_OK);
    size_t elen;
    char *exp = expected_roundtrip(s, n, &elen);
    CHECK(dlen == elen && !memcmp(dec, exp, elen));
    free(exp);
    free(dec);
    /* the default decode (specials skipped) through the streaming decoder */
    CHECK(ggx_tokenizer_decode(g_tok, ids, cnt, &dec, &dlen) == GGX_OK);
    check_stream(ids, cnt, dec, dlen);
    free(dec);
    free(ids);
}

static void fuzz_decode(const uint8_t *s, size_t n) {
    size_t k = n / 2;
    int32_t *ids = malloc((k + 1) * sizeof *ids);
    CHECK(ids);
    for (size_t i = 0; i < k; i++) ids[i] = (int32_t)(s[2 * i] | s[2 * i + 1] << 8) - 8;
    char *dec;
    size_t dlen;
    CHECK(ggx_tokenizer_decode(g_tok, ids, k, &dec, &dlen) == GGX_OK);
    CHECK(valid_utf8((const uint8_t *)dec, dlen) && strlen(dec) <= dlen);
    check_stream(ids, k, dec, dlen);
    free(dec);
    free(ids);
}

static void fuzz_load(const uint8_t *s, size_t n) {
    ggx_tokenizer *t = NULL;
    ggx_status st = ggx_tokenizer_load_json((const char *)s, n, &t);
    CHECK((st == GGX_OK) == (t != NULL));
    if (!t) return;
    int32_t ids[64];
    size_t cnt;
    ggx_tokenizer_encode(t, "Hello  world's 123 <|endoftext|>", 32, ids, 64, &cnt);
    char *dec = NULL;
    if (ggx_tokenizer_decode(t, ids, cnt < 64 ? cnt : 64, &dec, NULL) == GGX_OK) free(dec);
    ggx_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_once();
    if (size == 0) return 0;
    uint8_t mode = data[0];
    if (mode < 128) fuzz_encode(data + 1, size - 1);
    else if (mode < 192) fuzz_decode(data + 1, size - 1);
    else fuzz_load(data + 1, size - 1);
    return 0;
}
