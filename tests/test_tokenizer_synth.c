/* test_tokenizer_synth.c — HF semantics on small hand-made tokenizer.json files:
 *   - merge order by rank (not by position or length), pair merges given as "a b" or ["a","b"];
 *   - ignore_merges, unk_token with and without fuse_unk, dropped chars without unk;
 *   - added tokens: lstrip / rstrip / single_word / normalized, using the expectations of HF
 *     tokenizers' own unit tests (added_vocabulary.rs: options_use_cases,
 *     test_single_word_is_correct, test_lstrip_unicode_space), lowercased since we have no
 *     Lowercase normalizer;
 *   - add_prefix_space, use_regex=false;
 *   - clear errors for what is not implemented or malformed. */
#include "testutil.h"

#include "ggx.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* GPT-2 bytes_to_unicode() char of byte b, as UTF-8 into s. */
static void byte_char(int b, char s[4]) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
        cp = 256 + k;
    }
    memset(s, 0, 4);
    if (cp < 0x80) s[0] = (char)cp;
    else {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
    }
}

/* A tokenizer whose vocab is the 256 byte chars (id == byte, except those listed in `skip`),
 * then `extra` tokens (ids 256..), with the given merges / added tokens / options (JSON text). */
static char *make_json(const char *skip, const char *const *extra, int n_extra, const char *merges,
                       const char *added, const char *model_opts, const char *pretok, const char *normalizer) {
    cJSON *vocab = cJSON_CreateObject();
    for (int b = 0; b < 256; b++) {
        if (skip && strchr(skip, b) && b) continue;
        char s[4];
        byte_char(b, s);
        cJSON_AddNumberToObject(vocab, s, b);
    }
    for (int i = 0; i < n_extra; i++) cJSON_AddNumberToObject(vocab, extra[i], 256 + i);
    char *vs = cJSON_PrintUnformatted(vocab);
    cJSON_Delete(vocab);
    size_t cap = strlen(vs) + 4096;
    char *js = malloc(cap);
    snprintf(js, cap,
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":%s,"
             "\"normalizer\":%s,\"pre_tokenizer\":%s,"
             "\"post_processor\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
             "\"model\":{\"type\":\"BPE\",\"dropout\":null%s%s,\"vocab\":%s,\"merges\":%s}}",
             added ? added : "[]", normalizer ? normalizer : "null",
             pretok ? pretok : "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}",
             model_opts ? "," : "", model_opts ? model_opts : "", vs, merges ? merges : "[]");
    free(vs);
    return js;
}

static ggx_tokenizer *load(char *js) {
    ggx_tokenizer *tok = NULL;
    ggx_status st = ggx_tokenizer_load_json(js, strlen(js), &tok);
    TEST_CHECK_MSG(st == GGX_OK, "load: %s", ggx_last_error());
    free(js);
    return tok;
}

/* encode `text` and compare with want[0..n) (ids < 0 in want end the list) */
static void expect(const ggx_tokenizer *tok, const char *what, const char *text, const int32_t *want, size_t n_want) {
    int32_t ids[256];
    size_t n = 0;
    ggx_status st = ggx_tokenizer_encode(tok, text, strlen(text), ids, 256, &n);
    int ok = st == GGX_OK && n == n_want && !memcmp(ids, want, n * sizeof *ids);
    TEST_CHECK_MSG(ok, "%s: encode '%s'", what, text);
    if (!ok) {
        fprintf(stderr, "  got :");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  want:");
        for (size_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
}
#define EXPECT(tok, what, text, ...)                                                             \
    do {                                                                                         \
        const int32_t w_[] = {__VA_ARGS__};                                                      \
        expect(tok, what, text, w_, sizeof w_ / sizeof w_[0]);                                   \
    } while (0)

static void merges_by_rank(void) {
    static const char *const ex[] = {"ab", "bc", "abc", "cd", "abcd"};
    /* (b,c) has the best rank: abc comes from a + bc; then no (abc,d) merge but (c,d) is gone */
    ggx_tokenizer *t = load(make_json(NULL, ex, 5, "[\"b c\",\"a b\",\"a bc\",\"c d\",\"ab cd\"]", NULL, NULL, NULL, NULL));
    if (t) {
        EXPECT(t, "rank", "abc", 258);
        EXPECT(t, "rank", "abcd", 258, 'd');
        EXPECT(t, "rank", "xabx", 'x', 256, 'x');
        ggx_tokenizer_free(t);
    }
    /* same merges as pairs, in another order: (a,b) first, then (c,d), then (ab,cd) */
    t = load(make_json(NULL, ex, 5, "[[\"a\",\"b\"],[\"c\",\"d\"],[\"ab\",\"cd\"],[\"b\",\"c\"]]", NULL, NULL, NULL, NULL));
    if (t) {
        EXPECT(t, "pairs", "abcd", 260);
        EXPECT(t, "pairs", "bcd", 'b', 259);   /* (c,d) rank 1 beats (b,c) rank 3 */
        EXPECT(t, "pairs", "bc", 257);
        ggx_tokenizer_free(t);
    }
    /* equal pairs: leftmost first ("aaa" with a+a -> "aa": aa a) */
    static const char *const ex2[] = {"aa"};
    t = load(make_json(NULL, ex2, 1, "[\"a a\"]", NULL, NULL, NULL, NULL));
    if (t) {
        EXPECT(t, "leftmost", "aaa", 256, 'a');
        EXPECT(t, "leftmost", "aaaaa", 256, 256, 'a');
        ggx_tokenizer_free(t);
    }
}

static void model_options(void) {
    static const char *const ex[] = {"abc", "<unk>"};
    ggx_tokenizer *t = load(make_json(NULL, ex, 2, "[]", NULL, "\"ignore_merges\":true", NULL, NULL));
    if (t) {
        EXPECT(t, "ignore_merges", "abc", 256);
        EXPECT(t, "ignore_merges", "abcd", 'a', 'b', 'c', 'd');
        ggx_tokenizer_free(t);
    }
    t = load(make_json(NULL, ex, 2, "[]", NULL, "\"ignore_merges\":false", NULL, NULL));
    if (t) {
        EXPECT(t, "no ignore_merges", "abc", 'a', 'b', 'c');
        ggx_tokenizer_free(t);
    }
    /* 'x' and 'y' are not in the vocab */
    t = load(make_json("xy", ex, 2, "[]", NULL, "\"unk_token\":\"<unk>\",\"fuse_unk\":true", NULL, NULL));
    if (t) {
        EXPECT(t, "fuse_unk", "axyxb", 'a', 257, 'b');
        EXPECT(t, "fuse_unk", "xa", 257, 'a');
        ggx_tokenizer_free(t);
    }
    t = load(make_json("xy", ex, 2, "[]", NULL, "\"unk_token\":\"<unk>\",\"fuse_unk\":false", NULL, NULL));
    if (t) {
        EXPECT(t, "unk", "axyxb", 'a', 257, 257, 257, 'b');
        ggx_tokenizer_free(t);
    }
    t = load(make_json("xy", ex, 2, "[]", NULL, NULL, NULL, NULL));
    if (t) {
        EXPECT(t, "no unk: dropped", "axyb", 'a', 'b');
        ggx_tokenizer_free(t);
    }
}

static void pre_tokenizer_options(void) {
    static const char *const ex[] = {"\xC4\xA0" "a"}; /* "Ġa" */
    ggx_tokenizer *t = load(make_json(NULL, ex, 1, "[\"\xC4\xA0 a\"]", NULL, NULL,
                                      "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}", NULL));
    if (t) {
        EXPECT(t, "prefix space", "a", 256);
        EXPECT(t, "prefix space", " a", 256);       /* already starts with a space */
        EXPECT(t, "prefix space", "ab a", 256, 'b', 256);
        ggx_tokenizer_free(t);
    }
    /* defaults of ByteLevel when the fields are absent: add_prefix_space = use_regex = true */
    t = load(make_json(NULL, ex, 1, "[\"\xC4\xA0 a\"]", NULL, NULL, "{\"type\":\"ByteLevel\"}", NULL));
    if (t) {
        EXPECT(t, "defaults", "a", 256);
        ggx_tokenizer_free(t);
    }
    /* use_regex false: " a a" is one word: Ġa Ġa */
    t = load(make_json(NULL, ex, 1, "[\"\xC4\xA0 a\"]", NULL, NULL, NULL, NULL));
    if (t) {
        EXPECT(t, "no regex", "a a", 'a', 256);
        ggx_tokenizer_free(t);
    }
}

static void added_tokens(void) {
    /* HF options_use_cases: "my" lstrip+rstrip (normalized), "name", "ony" single_word,
     * [CLS]/[SEP] special. "[CLS] my name is anthony [SEP]" ->
     * [CLS] | " my " -> my | name | " is anthony " (model) | [SEP] */
    const char *added =
        "[{\"id\":256,\"content\":\"my\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":true,\"special\":false},"
        "{\"id\":257,\"content\":\"name\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false},"
        "{\"id\":258,\"content\":\"ony\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false},"
        "{\"id\":259,\"content\":\"[CLS]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
        "{\"id\":260,\"content\":\"[SEP]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}]";
    ggx_tokenizer *t = load(make_json(NULL, NULL, 0, "[]", added, NULL, NULL, "{\"type\":\"NFC\"}"));
    if (t) {
        EXPECT(t, "options_use_cases", "[CLS] my name is anthony [SEP]", 259, 256, 257, ' ', 'i', 's', ' ', 'a', 'n',
               't', 'h', 'o', 'n', 'y', ' ', 260);
        /* decode skips the special tokens only */
        int32_t ids[] = {259, 256, 257, 260};
        char *s = NULL;
        TEST_CHECK(ggx_tokenizer_decode(t, ids, 4, &s, NULL) == GGX_OK && s && !strcmp(s, "myname"));
        free(s);
        ggx_tokenizer_free(t);
    }
    /* test_single_word_is_correct: "<mask> my name <mask> a<mask> <mask>ony <mask>" ->
     * <mask> | " my name " | <mask> | " a<mask> <mask>ony " | <mask> */
    const char *mask_sw =
        "[{\"id\":256,\"content\":\"<mask>\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false}]";
    t = load(make_json(NULL, NULL, 0, "[]", mask_sw, NULL, NULL, "{\"type\":\"NFC\"}"));
    if (t) {
        int32_t want[64];
        size_t n = 0;
        const char *mid1 = " my name ", *mid2 = " a<mask> <mask>ony ";
        want[n++] = 256;
        for (const char *p = mid1; *p; p++) want[n++] = (unsigned char)*p;
        want[n++] = 256;
        for (const char *p = mid2; *p; p++) want[n++] = (unsigned char)*p;
        want[n++] = 256;
        expect(t, "single_word", "<mask> my name <mask> a<mask> <mask>ony <mask>", want, n);
        /* a combining mark is a word character: "◌̰<mask>" is not a single word */
        n = 0;
        const char *u = "- \xCC\xB0<mask>";
        for (const char *p = u; *p; p++) want[n++] = (unsigned char)*p;
        expect(t, "single_word unicode", u, want, n);
        ggx_tokenizer_free(t);
    }
    /* test_lstrip_unicode_space: "hi <mask> there\t<mask>\t<mask>\u2000" with lstrip, rstrip and
     * single_word -> "hi" | " <mask> " | "there" | "\t<mask>\t" | "<mask>\u2000" */
    const char *mask_all =
        "[{\"id\":256,\"content\":\"<mask>\",\"single_word\":true,\"lstrip\":true,\"rstrip\":true,\"normalized\":true,\"special\":false}]";
    t = load(make_json(NULL, NULL, 0, "[]", mask_all, NULL, NULL, "{\"type\":\"NFC\"}"));
    if (t) {
        EXPECT(t, "lstrip_unicode_space", "hi <mask> there\t<mask>\t<mask>\xE2\x80\x80", 'h', 'i', 256, 't', 'h', 'e', 'r',
               'e', 256, 256);
        ggx_tokenizer_free(t);
    }
    /* normalized tokens match the NFC form; non-normalized ones the raw text only */
    const char *nf =
        "[{\"id\":256,\"content\":\"e\xCC\x81\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false},"
        "{\"id\":257,\"content\":\"o\xCC\x88\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":false}]";
    t = load(make_json(NULL, NULL, 0, "[]", nf, NULL, NULL, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]}"));
    if (t) {
        EXPECT(t, "normalized NFD", "e\xCC\x81", 256);      /* NFD input, NFC pattern */
        EXPECT(t, "normalized NFC", "\xC3\xA9", 256);
        EXPECT(t, "raw NFD", "o\xCC\x88", 257);             /* raw match before normalization */
        EXPECT(t, "raw NFC", "\xC3\xB6", 0xC3, 0xB6);        /* no match on the composed form */
        ggx_tokenizer_free(t);
    }
    /* duplicates: an identical entry is ignored; ids follow HF's rules */
    const char *dup =
        "[{\"id\":256,\"content\":\"<x>\",\"special\":true,\"normalized\":false},"
        "{\"id\":256,\"content\":\"<x>\",\"special\":true,\"normalized\":false},"
        "{\"id\":257,\"content\":\"<y>\",\"special\":true,\"normalized\":false}]";
    t = load(make_json(NULL, NULL, 0, "[]", dup, NULL, NULL, NULL));
    if (t) {
        EXPECT(t, "dup", "a<x><y>", 'a', 256, 257);
        TEST_CHECK(ggx_tokenizer_n_vocab(t) == 258);
        ggx_tokenizer_free(t);
    }
}

static void errors(void) {
    static const struct { const char *json; ggx_status st; const char *needle; } cases[] = {
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", GGX_ERR_UNSUPPORTED, "WordPiece"},
        {"{\"normalizer\":{\"type\":\"NFKC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", GGX_ERR_UNSUPPORTED, "NFKC"},
        {"{\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", GGX_ERR_UNSUPPORTED, "Whitespace"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", GGX_ERR_UNSUPPORTED, "WordPiece"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},\"post_processor\":{\"type\":\"TemplateProcessing\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", GGX_ERR_UNSUPPORTED, "TemplateProcessing"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}", GGX_ERR_UNSUPPORTED, "dropout"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", GGX_ERR_FORMAT, "'ab' is not in the vocabulary"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b c\"]}}", GGX_ERR_FORMAT, "merge #1"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-3},\"merges\":[]}}", GGX_ERR_FORMAT, "vocab entry 'a'"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"unk_token\":\"<unk>\",\"merges\":[]}}", GGX_ERR_FORMAT, "unk_token"},
        {"{\"version\":\"2.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", GGX_ERR_UNSUPPORTED, "version"},
        {"{\"model\": {\"vocab\": {\"a\": 0}", GGX_ERR_FORMAT, "not valid JSON"},
        {"[1,2,3]", GGX_ERR_FORMAT, "top level"},
        {"", GGX_ERR_FORMAT, "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ggx_tokenizer *t = (ggx_tokenizer *)1;
        ggx_status st = ggx_tokenizer_load_json(cases[i].json, strlen(cases[i].json), &t);
        TEST_CHECK_MSG(st == cases[i].st && t == NULL && strstr(ggx_last_error(), cases[i].needle),
                       "error case %zu: status %d, message '%s' (want %d, '%s')", i, st, ggx_last_error(), cases[i].st,
                       cases[i].needle);
    }
    ggx_tokenizer *t = NULL;
    TEST_CHECK(ggx_tokenizer_load("/nonexistent/tokenizer.json", &t) == GGX_ERR_IO && !t &&
               strstr(ggx_last_error(), "/nonexistent/tokenizer.json"));
    TEST_CHECK(ggx_tokenizer_load(NULL, &t) == GGX_ERR_INVALID_ARG);
    TEST_CHECK(ggx_tokenizer_encode(NULL, "a", 1, NULL, 0, NULL) == GGX_ERR_INVALID_ARG);
}

int main(void) {
    merges_by_rank();
    model_options();
    pre_tokenizer_options();
    added_tokens();
    errors();
    return test_finish("test_tokenizer_synth");
}
