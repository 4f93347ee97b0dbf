/* test_tokenizer.c — exactness against HF tokenizers: the 58 strings of tokenizers/cases.json with
 * the GPT-NeoX-20B tokenizer and the tiny model's tokenizer (ids and decodes from the fixtures),
 * plus the streaming decoder on the same ids (equal to the full decode, never broken UTF-8). */
#include "testutil.h"

#include "ggx.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>

static int utf8_ok(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return 0;
        if (k == 3 && ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] > 0x9F))) return 0;
        if (k == 4 && ((c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] > 0x8F))) return 0;
        i += k;
    }
    return 1;
}

/* Feed ids one at a time through the streaming decoder; returns the concatenation. */
static char *stream_decode(const ggx_tokenizer *tok, const int32_t *ids, size_t n, int *bad_utf8) {
    ggx_detok *d;
    if (ggx_detok_create(tok, &d) != GGX_OK) return NULL;
    size_t cap = ggx_tokenizer_detok_bufsize(tok);
    char *buf = malloc(cap);
    size_t total = 0, acap = 64;
    char *acc = malloc(acap);
    acc[0] = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t got = 0;
        ggx_status st = i < n ? ggx_detok_push(d, ids[i], buf, cap, &got) : ggx_detok_flush(d, buf, cap, &got);
        if (st != GGX_OK) {
            fprintf(stderr, "detok: %s\n", ggx_last_error());
            break;
        }
        if (!utf8_ok(buf, got) || strlen(buf) != got) *bad_utf8 = 1;
        while (total + got + 1 > acap) acap *= 2;
        acc = realloc(acc, acap);
        memcpy(acc + total, buf, got + 1);
        total += got;
    }
    free(buf);
    ggx_detok_free(d);
    return acc;
}

static void run_fixture(const char *tok_path, const char *enc_path) {
    ggx_tokenizer *tok = NULL;
    ggx_status st = ggx_tokenizer_load(test_data_path(tok_path), &tok);
    TEST_CHECK_MSG(st == GGX_OK, "load %s: %s", tok_path, ggx_last_error());
    if (st) return;
    size_t len;
    char *js = test_read_file(test_data_path(enc_path), &len);
    TEST_CHECK_MSG(js != NULL, "read %s", enc_path);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    TEST_CHECK_MSG(cJSON_GetArraySize(cases) == 58, "%s: 58 cases", enc_path);
    const cJSON *c;
    int k = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *jids = cJSON_GetObjectItem(c, "ids");
        const char *want_dec = cJSON_GetObjectItem(c, "decoded")->valuestring;
        int n_want = cJSON_GetArraySize(jids);
        int32_t *want = malloc(sizeof(int32_t) * (size_t)(n_want + 1));
        for (int i = 0; i < n_want; i++) want[i] = cJSON_GetArrayItem(jids, i)->valueint;

        int32_t ids[1024];
        size_t n = 0;
        st = ggx_tokenizer_encode(tok, text, strlen(text), ids, 1024, &n);
        int same = st == GGX_OK && n == (size_t)n_want && !memcmp(ids, want, n * sizeof *ids);
        TEST_CHECK_MSG(same, "%s case %d encode %s", tok_path, k, text);
        if (!same) {
            fprintf(stderr, "  got :");
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  want:");
            for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
        }
        /* decode the expected ids (so a decode bug is not masked by an encode bug) */
        char *dec = NULL;
        size_t dlen = 0;
        st = ggx_tokenizer_decode(tok, want, (size_t)n_want, &dec, &dlen);
        TEST_CHECK_MSG(st == GGX_OK && dec && !strcmp(dec, want_dec) && dlen == strlen(want_dec),
                       "%s case %d decode: got '%s' want '%s'", tok_path, k, dec ? dec : "(null)", want_dec);
        int bad = 0;
        char *sdec = stream_decode(tok, want, (size_t)n_want, &bad);
        TEST_CHECK_MSG(sdec && dec && !strcmp(sdec, dec), "%s case %d streaming decode differs", tok_path, k);
        TEST_CHECK_MSG(!bad, "%s case %d streaming decoder emitted broken UTF-8", tok_path, k);
        free(sdec);
        free(dec);
        free(want);
        k++;
    }
    cJSON_Delete(root);
    free(js);
    ggx_tokenizer_free(tok);
}

/* Facts the fixtures and xlstm-spec §7 state about GPT-NeoX-20B. */
static void neox_facts(void) {
    ggx_tokenizer *tok;
    if (ggx_tokenizer_load(test_data_path("tokenizers/gpt-neox-20b/tokenizer.json"), &tok) != GGX_OK) return;
    TEST_CHECK(ggx_tokenizer_eot_id(tok) == 0);
    TEST_CHECK(ggx_tokenizer_token_id(tok, "<|padding|>") == 1);
    TEST_CHECK(ggx_tokenizer_token_id(tok, "!") == 2);
    TEST_CHECK(ggx_tokenizer_token_id(tok, "  ") == 50276);
    TEST_CHECK(ggx_tokenizer_token_id(tok, "no such token") == -1);
    TEST_CHECK_MSG(ggx_tokenizer_n_vocab(tok) == 50281, "n_vocab %d", ggx_tokenizer_n_vocab(tok));
    TEST_CHECK(ggx_tokenizer_is_special(tok, 0) && !ggx_tokenizer_is_special(tok, 50276));
    TEST_CHECK(ggx_tokenizer_bos_id(tok) == 0 && ggx_tokenizer_pad_id(tok) == 1);
    /* keep_special decodes special tokens too */
    int32_t ids[] = {1156, 0, 3062};
    char *t = NULL;
    TEST_CHECK(ggx_tokenizer_decode_ex(tok, ids, 3, 1, &t, NULL) == GGX_OK && t && !strcmp(t, "text<|endoftext|>more"));
    free(t);
    /* the count is reported when the buffer is too small; NULL/0 asks for the count */
    size_t n = 0;
    int32_t one[1];
    TEST_CHECK(ggx_tokenizer_encode(tok, "Hello world", 11, one, 1, &n) == GGX_ERR_INVALID_ARG && n == 2 && one[0] == 12092);
    TEST_CHECK(ggx_tokenizer_encode(tok, "Hello world", 11, NULL, 0, &n) == GGX_ERR_INVALID_ARG && n == 2);
    TEST_CHECK(ggx_tokenizer_encode(tok, "", 0, NULL, 0, &n) == GGX_OK && n == 0);
    /* unknown ids decode to nothing, like HF */
    int32_t odd[] = {-5, 12092, 999999, 50300};
    TEST_CHECK(ggx_tokenizer_decode(tok, odd, 4, &t, NULL) == GGX_OK && t && !strcmp(t, "Hello"));
    free(t);
    ggx_tokenizer_free(tok);
}

int main(void) {
    run_fixture("tokenizers/gpt-neox-20b/tokenizer.json", "tokenizers/gpt-neox-20b/encodings.json");
    run_fixture("xlstm-tiny/tokenizer.json", "xlstm-tiny/reference/tokenizer_encodings.json");
    neox_facts();
    return test_finish("test_tokenizer");
}
