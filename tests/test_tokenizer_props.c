/* test_tokenizer_props.c — properties of encode/decode on generated input, for both fixture
 * tokenizers:
 *   - decode(encode(s)) == NFC(s) for random valid UTF-8 (ASCII, space runs, newlines, tabs,
 *     Latin/Greek/Cyrillic/CJK/Hangul, combining marks, emoji with ZWJ/skin tones, Unicode
 *     spaces, NUL); seed fixed (GGX_TEST_SEED overrides) but every string different;
 *   - the streaming decoder's output equals the full decode and is valid UTF-8 at every step,
 *     also for random id sequences (which produce ill-formed byte sequences);
 *   - invalid UTF-8 input is rejected with GGX_ERR_INVALID_ARG naming the byte offset;
 *   - lossy decoding follows Unicode's maximal-subpart practice (Table 3-8 example). */
#include "testutil.h"

#include "ggx.h"
#include "tokenizer.h"

#include <pthread.h>
#include <stdint.h>
#include <utf8proc.h>

static uint64_t g_rng;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static uint32_t rndn(uint32_t n) { return rnd() % n; }

static size_t put_cp(char *out, uint32_t cp) {
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

/* One random valid UTF-8 string of roughly `target` bytes into buf (cap >= target + 64). */
static size_t gen_string(char *buf, size_t target) {
    static const char *const words[] = {"the", "Hello", " world", "I'm", "you're", "we've", "it's",
                                        "'ll", "don't", "ROMEO", "3.14", "1e-10", "http://x.y/z?q=1",
                                        "def f(x):", "café", "naïve", "日本語", "😀", "x\u0307\u0323"};
    size_t n = 0;
    while (n < target) {
        uint32_t kind = rndn(14);
        switch (kind) {
        case 0: case 1: case 2: { /* ASCII letters */
            int k = 1 + (int)rndn(8);
            for (int i = 0; i < k; i++) buf[n++] = (char)((rndn(2) ? 'a' : 'A') + rndn(26));
            break;
        }
        case 3: { /* space runs, incl. long ones (GPT-NeoX has tokens for 2..24 spaces) */
            int k = 1 + (int)(rndn(4) ? rndn(3) : rndn(40));
            for (int i = 0; i < k; i++) buf[n++] = ' ';
            break;
        }
        case 4: { /* whitespace mixes */
            static const char *const ws[] = {"\n", "\r\n", "\t", "\n\n", " \n ", "\t\t"};
            const char *w = ws[rndn(6)];
            memcpy(buf + n, w, strlen(w));
            n += strlen(w);
            break;
        }
        case 5: { /* digits and ASCII punctuation */
            int k = 1 + (int)rndn(6);
            for (int i = 0; i < k; i++) buf[n++] = rndn(2) ? (char)('0' + rndn(10)) : "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"[rndn(32)];
            break;
        }
        case 6: { /* words from a list */
            const char *w = words[rndn(sizeof words / sizeof words[0])];
            memcpy(buf + n, w, strlen(w));
            n += strlen(w);
            break;
        }
        case 7: { /* 2-byte scripts: Latin-1, Latin Ext, Greek, Cyrillic, Arabic */
            static const uint32_t lo[] = {0xC0, 0x100, 0x391, 0x410, 0x627};
            int s = (int)rndn(5), k = 1 + (int)rndn(5);
            for (int i = 0; i < k; i++) n += put_cp(buf + n, lo[s] + rndn(40));
            break;
        }
        case 8: { /* 3-byte: CJK, kana, Hangul syllables and jamo */
            static const uint32_t lo[] = {0x4E00, 0x3041, 0xAC00, 0x1100};
            int s = (int)rndn(4), k = 1 + (int)rndn(4);
            for (int i = 0; i < k; i++) n += put_cp(buf + n, lo[s] + rndn(s == 3 ? 0x60 : 0x200));
            break;
        }
        case 9: { /* combining marks (possibly at the start, possibly stacked) */
            int k = 1 + (int)rndn(3);
            for (int i = 0; i < k; i++) n += put_cp(buf + n, 0x300 + rndn(0x70));
            break;
        }
        case 10: { /* emoji, ZWJ sequences, skin tones, variation selectors */
            n += put_cp(buf + n, 0x1F600 + rndn(0x50));
            if (rndn(2)) n += put_cp(buf + n, rndn(2) ? 0x200D : 0x1F3FB + rndn(5));
            if (rndn(3) == 0) n += put_cp(buf + n, 0xFE0F);
            break;
        }
        case 11: { /* Unicode spaces and separators */
            static const uint32_t sp[] = {0xA0, 0x2009, 0x3000, 0x2028, 0x85, 0x180E, 0x200B, 0x1680};
            n += put_cp(buf + n, sp[rndn(8)]);
            break;
        }
        case 12: { /* anything valid: any scalar value, incl. NUL, noncharacters, U+10FFFF */
            uint32_t cp;
            do cp = rndn(4) ? rndn(0x3000) : rndn(0x110000);
            while (cp >= 0xD800 && cp <= 0xDFFF);
            n += put_cp(buf + n, cp);
            break;
        }
        default: { /* compatibility / composition specials */
            static const uint32_t sp[] = {0xDF, 0x1E9E, 0xFB01, 0x2126, 0x212B, 0x1E0A, 0x0958, 0xF900};
            n += put_cp(buf + n, sp[rndn(8)]);
            break;
        }
        }
    }
    return n;
}

static int utf8_valid(const char *s, size_t n) {
    utf8proc_int32_t cp;
    for (size_t i = 0; i < n;) {
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* Streams ids through ggx_detok; checks each chunk; returns the concatenation (malloc'ed). */
static char *stream(const ggx_tokenizer *tok, const int32_t *ids, size_t n, size_t *len, int *bad) {
    ggx_detok *d = NULL;
    if (ggx_detok_create(tok, &d)) return NULL;
    size_t cap = ggx_tokenizer_detok_bufsize(tok), total = 0, acap = 256;
    char *buf = malloc(cap), *acc = malloc(acap);
    for (size_t i = 0; i <= n; i++) {
        size_t got = 0;
        ggx_status st = i < n ? ggx_detok_push(d, ids[i], buf, cap, &got) : ggx_detok_flush(d, buf, cap, &got);
        if (st) {
            *bad = 1;
            break;
        }
        if (!utf8_valid(buf, got) || buf[got] != 0) *bad = 1;
        while (total + got + 1 > acap) acap *= 2;
        acc = realloc(acc, acap);
        memcpy(acc + total, buf, got);
        total += got;
    }
    acc[total] = 0;
    free(buf);
    ggx_detok_free(d);
    *len = total;
    return acc;
}

static void roundtrip(const char *name, const ggx_tokenizer *tok, int n_strings) {
    char *buf = malloc(4096);
    int32_t *ids = malloc(sizeof(int32_t) * 8192);
    int fails = 0;
    for (int it = 0; it < n_strings && fails < 5; it++) {
        size_t len = gen_string(buf, 1 + rndn(it % 10 == 0 ? 3000 : 120));
        size_t n = 0;
        ggx_status st = ggx_tokenizer_encode(tok, buf, len, ids, 8192, &n);
        TEST_CHECK_MSG(st == GGX_OK, "%s: encode #%d: %s", name, it, ggx_last_error());
        if (st) { fails++; continue; }
        char *dec = NULL;
        size_t dlen = 0;
        st = ggx_tokenizer_decode(tok, ids, n, &dec, &dlen);
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t nl = utf8proc_map((const utf8proc_uint8_t *)buf, (utf8proc_ssize_t)len, &nfc,
                                           (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
        int ok = st == GGX_OK && nl >= 0 && dlen == (size_t)nl && !memcmp(dec, nfc, dlen);
        TEST_CHECK_MSG(ok, "%s: decode(encode(s)) != NFC(s) for string #%d (%zu bytes, %zu ids)", name, it, len, n);
        if (!ok) {
            fails++;
            fprintf(stderr, "  input: ");
            for (size_t i = 0; i < len && i < 200; i++) fprintf(stderr, "%02x", (unsigned char)buf[i]);
            fprintf(stderr, "\n");
        }
        int bad = 0;
        size_t slen = 0;
        char *s = stream(tok, ids, n, &slen, &bad);
        TEST_CHECK_MSG(s && !bad && slen == dlen && !memcmp(s, dec, dlen), "%s: streaming decode #%d", name, it);
        free(s);
        free(nfc);
        free(dec);
    }
    free(buf);
    free(ids);
}

/* Random ids (ill-formed byte sequences across token boundaries): stream == full decode. */
static void random_ids(const char *name, const ggx_tokenizer *tok) {
    int32_t ids[64];
    int nv = ggx_tokenizer_n_vocab(tok);
    for (int it = 0; it < 3000; it++) {
        size_t n = rndn(64);
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(rndn(8) == 0 ? rndn((uint32_t)nv + 10) - 5 : rndn(300));
        char *dec = NULL;
        size_t dlen = 0, slen = 0;
        int bad = 0;
        ggx_status st = ggx_tokenizer_decode(tok, ids, n, &dec, &dlen);
        char *s = stream(tok, ids, n, &slen, &bad);
        int ok = st == GGX_OK && utf8_valid(dec, dlen) && s && !bad && slen == dlen && !memcmp(s, dec, dlen);
        TEST_CHECK_MSG(ok, "%s: random ids #%d: stream/full decode differ or invalid UTF-8", name, it);
        free(s);
        free(dec);
        if (!ok) break;
    }
}

static void invalid_utf8(const ggx_tokenizer *tok) {
    static const struct { const char *s; size_t len, off; } cases[] = {
        {"\x80", 1, 0},                  /* lone continuation byte */
        {"ab\xC0\xAF", 4, 2},            /* overlong '/' */
        {"abc\xE0\x80\x80", 6, 3},       /* overlong NUL */
        {"x\xED\xA0\x80y", 5, 1},        /* UTF-16 surrogate */
        {"hello \xF5\x80\x80\x80", 10, 6}, /* beyond U+10FFFF (lead F5) */
        {"\xF4\x90\x80\x80", 4, 0},      /* beyond U+10FFFF */
        {"caf\xC3", 4, 3},               /* truncated at the end */
        {"\xE2\x82 euro", 7, 0},         /* truncated in the middle */
        {"ok \xFF", 4, 3},
        {"<|endoftext|>\xFE", 14, 13},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t ids[32];
        size_t n = 123;
        ggx_status st = ggx_tokenizer_encode(tok, cases[i].s, cases[i].len, ids, 32, &n);
        char want[64];
        snprintf(want, sizeof want, "byte offset %zu", cases[i].off);
        TEST_CHECK_MSG(st == GGX_ERR_INVALID_ARG && n == 0 && strstr(ggx_last_error(), want) &&
                           strstr(ggx_last_error(), "UTF-8"),
                       "invalid UTF-8 case %zu: status %d, n %zu, message '%s'", i, st, n, ggx_last_error());
    }
    /* random bytes: never a crash; OK exactly when the bytes are valid UTF-8 */
    char buf[64];
    int32_t ids[128];
    for (int it = 0; it < 20000; it++) {
        size_t len = rndn(sizeof buf);
        for (size_t i = 0; i < len; i++) buf[i] = (char)(rndn(3) ? 0x80 + rndn(0x80) : rndn(0x80));
        size_t n;
        ggx_status st = ggx_tokenizer_encode(tok, buf, len, ids, 128, &n);
        if ((st == GGX_OK) != utf8_valid(buf, len)) {
            TEST_CHECK_MSG(0, "random bytes #%d: status %d but valid=%d", it, st, utf8_valid(buf, len));
            break;
        }
    }
    TEST_CHECK(1);
}

/* Unicode 15 §3.9 Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD
 * c FFFD FFFD d. Built from the tiny tokenizer's single-byte tokens. */
static void lossy_table_3_8(const ggx_tokenizer *tok) {
    static const unsigned char bytes[] = {0x61, 0xF1, 0x80, 0x80, 0xE1, 0x80, 0xC2, 0x62, 0x80, 0x63, 0x80, 0xBF, 0x64};
    int32_t ids[sizeof bytes];
    for (size_t i = 0; i < sizeof bytes; i++) {
        /* GPT-2 bytes_to_unicode(), written out independently of the library */
        int b = bytes[i], cp = b;
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
            int k = 0;
            for (int x = 0; x < b; x++)
                if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
            cp = 256 + k;
        }
        char s[8] = {0};
        put_cp(s, (uint32_t)cp);
        ids[i] = ggx_tokenizer_token_id(tok, s);
        TEST_CHECK_MSG(ids[i] >= 0, "byte token for 0x%02x", b);
    }
    const char *want = "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d";
    char *dec = NULL;
    TEST_CHECK(ggx_tokenizer_decode(tok, ids, sizeof bytes, &dec, NULL) == GGX_OK && dec && !strcmp(dec, want));
    size_t slen;
    int bad = 0;
    char *s = stream(tok, ids, sizeof bytes, &slen, &bad);
    TEST_CHECK(s && !bad && !strcmp(s, want));
    free(s);
    free(dec);
    /* an incomplete character at the end: held back by push, U+FFFD at flush */
    ggx_detok *d;
    TEST_CHECK(ggx_detok_create(tok, &d) == GGX_OK);
    char buf[64];
    size_t n;
    TEST_CHECK(ggx_detok_push(d, ids[4], buf, sizeof buf, &n) == GGX_OK && n == 0 && buf[0] == 0); /* E1 */
    TEST_CHECK(ggx_detok_push(d, ids[5], buf, sizeof buf, &n) == GGX_OK && n == 0);                /* 80 */
    /* a buffer too small fails without losing state */
    TEST_CHECK(ggx_detok_flush(d, buf, 3, &n) == GGX_ERR_INVALID_ARG && n == 3);
    TEST_CHECK(ggx_detok_flush(d, buf, sizeof buf, &n) == GGX_OK && n == 3 && !strcmp(buf, "\xEF\xBF\xBD"));
    TEST_CHECK(ggx_detok_flush(d, buf, sizeof buf, &n) == GGX_OK && n == 0);
    ggx_detok_free(d);
}

/* Several threads encode the same texts with one tokenizer at once: same ids as one thread. */
typedef struct {
    const ggx_tokenizer *tok;
    char **texts;
    size_t *lens;
    int32_t **ids;
    size_t *n;
    int n_texts, mismatches;
} mt_job;

static void *mt_worker(void *arg) {
    mt_job *j = arg;
    int32_t *ids = malloc(sizeof(int32_t) * 8192);
    for (int rep = 0; rep < 4; rep++)
        for (int i = 0; i < j->n_texts; i++) {
            size_t n = 0;
            if (ggx_tokenizer_encode(j->tok, j->texts[i], j->lens[i], ids, 8192, &n) != GGX_OK || n != j->n[i] ||
                memcmp(ids, j->ids[i], n * sizeof *ids))
                j->mismatches++;
        }
    free(ids);
    return NULL;
}

static void threads(const ggx_tokenizer *tok) {
    enum { N_TEXTS = 64, N_THREADS = 4 };
    char *texts[N_TEXTS];
    size_t lens[N_TEXTS], n[N_TEXTS];
    int32_t *ids[N_TEXTS];
    for (int i = 0; i < N_TEXTS; i++) {
        texts[i] = malloc(2048);
        lens[i] = gen_string(texts[i], 1 + rndn(1500));
        ids[i] = malloc(sizeof(int32_t) * 8192);
        TEST_CHECK(ggx_tokenizer_encode(tok, texts[i], lens[i], ids[i], 8192, &n[i]) == GGX_OK);
    }
    mt_job jobs[N_THREADS];
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        jobs[t] = (mt_job){tok, texts, lens, ids, n, N_TEXTS, 0};
        pthread_create(&th[t], NULL, mt_worker, &jobs[t]);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        TEST_CHECK_MSG(jobs[t].mismatches == 0, "thread %d: %d encodings differ", t, jobs[t].mismatches);
    }
    for (int i = 0; i < N_TEXTS; i++) {
        free(texts[i]);
        free(ids[i]);
    }
}

int main(void) {
    const char *seed = getenv("GGX_TEST_SEED");
    g_rng = seed ? strtoull(seed, NULL, 0) : 0x2026112706ull;
    if (!g_rng) g_rng = 1;
    static const char *const paths[2] = {"tokenizers/gpt-neox-20b/tokenizer.json", "xlstm-tiny/tokenizer.json"};
    for (int t = 0; t < 2; t++) {
        ggx_tokenizer *tok = NULL;
        ggx_status st = ggx_tokenizer_load(test_data_path(paths[t]), &tok);
        TEST_CHECK_MSG(st == GGX_OK, "load %s: %s", paths[t], ggx_last_error());
        if (st) continue;
        roundtrip(paths[t], tok, 1500);
        random_ids(paths[t], tok);
        invalid_utf8(tok);
        if (t == 1) lossy_table_3_8(tok);
        if (t == 0) threads(tok);
        ggx_tokenizer_free(tok);
    }
    return test_finish("test_tokenizer_props");
}
