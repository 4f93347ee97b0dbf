/*
 * test_format.c — the .ggx writer and reader: round trip of every metadata type and of tensor
 * data, writer misuse, atomic output (nothing at the path on failure), and malformed files:
 * truncation at every byte (and so at every section boundary), flipped bytes (CRC errors), and
 * crafted files with valid CRCs whose lengths/offsets/counts/products are out of bounds.
 */
#include "ggx/error.h"
#include "ggx/ggxfile.h"
#include "ggx/ggxfile_layout.h"
#include "ggx/quants.h"
#include "test_convert_util.h"
#include "testutil.h"

#include <math.h>
#include <zlib.h>

static char g_dir[4096];

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%.3000s/%s", g_dir, name); }

/* ---------------------------------------------------------------- a small valid file */

static float g_a[3 * 5];      /* "a"   f32  [3, 5] */
static uint8_t g_b[2 * 2 * 34]; /* "blk.0.b" q8_0 [2, 64] */
static uint16_t g_c[7];       /* "c"   bf16 [7] */

static ggx_status write_sample(const char *path, size_t chunk) {
    ggx_writer *w;
    ggx_status s = ggx_writer_open(path, &w);
    if (s) return s;
    const int32_t ai[4] = {-1, 0, 7, 2147483647};
    const float af[3] = {0.5f, -2.25f, 1e-7f};
    const char *as[4] = {"", "x", "hello world", "\xc3\xa9t\xc3\xa9"};
    static const char blob[5] = {0, 1, 2, 3, (char)0xff};
    if ((s = ggx_writer_set_str(w, "general.architecture", "xlstm")) ||
        (s = ggx_writer_set_u32(w, "k.u32", 4000000000u)) ||
        (s = ggx_writer_set_i32(w, "k.i32", -5)) ||
        (s = ggx_writer_set_u64(w, "k.u64", 1ull << 40)) ||
        (s = ggx_writer_set_i64(w, "k.i64", -(1ll << 40))) ||
        (s = ggx_writer_set_f32(w, "k.f32", 1.5f)) ||
        (s = ggx_writer_set_f64(w, "k.f64", 0.1)) ||
        (s = ggx_writer_set_bool(w, "k.bool", true)) ||
        (s = ggx_writer_set_str(w, "k.empty", "")) ||
        (s = ggx_writer_set_blob(w, "k.blob", blob, sizeof blob)) ||
        (s = ggx_writer_set_arr_i32(w, "k.ai32", ai, 4)) ||
        (s = ggx_writer_set_arr_f32(w, "k.af32", af, 3)) ||
        (s = ggx_writer_set_arr_str(w, "k.astr", as, 4)) ||
        (s = ggx_writer_set_arr_i32(w, "k.aempty", NULL, 0)))
        goto fail;
    int64_t da[2] = {3, 5}, db[2] = {2, 64}, dc[1] = {7};
    if ((s = ggx_writer_add_tensor(w, "a", GGX_TYPE_F32, 2, da)) ||
        (s = ggx_writer_add_tensor(w, "blk.0.b", GGX_TYPE_Q8_0, 2, db)) ||
        (s = ggx_writer_add_tensor(w, "c", GGX_TYPE_BF16, 1, dc)))
        goto fail;
    /* stream all data in `chunk`-byte pieces that cross tensor boundaries */
    uint8_t all[sizeof g_a + sizeof g_b + sizeof g_c];
    memcpy(all, g_a, sizeof g_a);
    memcpy(all + sizeof g_a, g_b, sizeof g_b);
    memcpy(all + sizeof g_a + sizeof g_b, g_c, sizeof g_c);
    for (size_t o = 0; o < sizeof all; o += chunk) {
        size_t k = sizeof all - o < chunk ? sizeof all - o : chunk;
        if ((s = ggx_writer_write(w, all + o, k))) goto fail;
    }
    return ggx_writer_finish(w);
fail:
    ggx_writer_abort(w);
    return s;
}

static void check_sample(const ggx_file *f) {
    uint32_t u;
    int64_t i;
    float x;
    bool b;
    char *str;
    TEST_CHECK(ggx_file_version(f) == 1);
    TEST_CHECK(ggx_file_n_kv(f) == 14);
    TEST_CHECK(ggx_file_get_u32(f, "k.u32", &u) == GGX_OK && u == 4000000000u);
    TEST_CHECK(ggx_file_get_i64(f, "k.i32", &i) == GGX_OK && i == -5);
    TEST_CHECK(ggx_file_get_u32(f, "k.i32", &u) == GGX_ERR_FORMAT); /* negative: does not fit */
    TEST_CHECK(strstr(ggx_last_error(), "k.i32") != NULL);
    TEST_CHECK(ggx_file_get_i64(f, "k.u64", &i) == GGX_OK && i == (1ll << 40));
    TEST_CHECK(ggx_file_get_u32(f, "k.u64", &u) == GGX_ERR_FORMAT);
    TEST_CHECK(ggx_file_get_i64(f, "k.i64", &i) == GGX_OK && i == -(1ll << 40));
    TEST_CHECK(ggx_file_get_f32(f, "k.f32", &x) == GGX_OK && x == 1.5f);
    TEST_CHECK(ggx_file_get_f32(f, "k.f64", &x) == GGX_OK && x == 0.1f);
    TEST_CHECK(ggx_file_get_bool(f, "k.bool", &b) == GGX_OK && b);
    TEST_CHECK(ggx_file_get_bool(f, "k.u32", &b) == GGX_ERR_FORMAT);
    TEST_CHECK(ggx_file_get_str(f, "general.architecture", &str) == GGX_OK && !strcmp(str, "xlstm"));
    free(str);
    TEST_CHECK(ggx_file_get_str(f, "k.empty", &str) == GGX_OK && !strcmp(str, ""));
    free(str);
    TEST_CHECK(ggx_file_get_str(f, "no.such.key", &str) == GGX_ERR_FORMAT && str == NULL);
    TEST_CHECK(strstr(ggx_last_error(), "no.such.key") != NULL);
    TEST_CHECK(ggx_file_find_kv(f, "no.such.key") == NULL);
    TEST_CHECK(ggx_file_find_kv(f, "k") == NULL);
    const void *bl;
    uint64_t bn;
    TEST_CHECK(ggx_file_get_blob(f, "k.blob", &bl, &bn) == GGX_OK && bn == 5 &&
               !memcmp(bl, "\0\1\2\3\xff", 5));
    const ggx_kv *kv = ggx_file_find_kv(f, "k.ai32");
    TEST_CHECK(kv && kv->type == GGX_KV_ARRAY && kv->elem_type == GGX_KV_I32 && kv->count == 4);
    if (kv) {
        int32_t v[4];
        memcpy(v, kv->data, 16);
        TEST_CHECK(v[0] == -1 && v[1] == 0 && v[2] == 7 && v[3] == 2147483647);
        TEST_CHECK(((uintptr_t)kv->data - (uintptr_t)ggx_file_kv(f, 0)->key.ptr) % 8 == 0);
    }
    kv = ggx_file_find_kv(f, "k.af32");
    TEST_CHECK(kv && kv->elem_type == GGX_KV_F32 && kv->count == 3);
    if (kv) {
        float v[3];
        memcpy(v, kv->data, 12);
        TEST_CHECK(v[0] == 0.5f && v[1] == -2.25f && v[2] == 1e-7f);
    }
    kv = ggx_file_find_kv(f, "k.astr");
    TEST_CHECK(kv && kv->elem_type == GGX_KV_STRING && kv->count == 4);
    if (kv) {
        const char *want[4] = {"", "x", "hello world", "\xc3\xa9t\xc3\xa9"};
        for (int k = 0; k < 4; k++) {
            ggx_str s = ggx_kv_array_str(kv, (uint64_t)k);
            TEST_CHECK_MSG(s.len == strlen(want[k]) && !memcmp(s.ptr, want[k], s.len), "astr[%d]", k);
        }
        TEST_CHECK(ggx_kv_array_str(kv, 4).ptr == NULL);
    }
    kv = ggx_file_find_kv(f, "k.aempty");
    TEST_CHECK(kv && kv->count == 0);

    TEST_CHECK(ggx_file_n_tensors(f) == 3);
    const ggx_tensor_info *a = ggx_file_find_tensor(f, "a"), *bt = ggx_file_find_tensor(f, "blk.0.b"),
                          *c = ggx_file_find_tensor(f, "c");
    TEST_CHECK(a && bt && c && ggx_file_find_tensor(f, "blk.0") == NULL);
    if (!a || !bt || !c) return;
    TEST_CHECK(a == ggx_file_tensor(f, 0) && bt == ggx_file_tensor(f, 1) && c == ggx_file_tensor(f, 2));
    TEST_CHECK(a->type == GGX_TYPE_F32 && a->n_dims == 2 && a->dims[0] == 3 && a->dims[1] == 5 &&
               a->dims[2] == 1 && a->n_elements == 15 && a->size == sizeof g_a);
    TEST_CHECK(bt->type == GGX_TYPE_Q8_0 && bt->dims[0] == 2 && bt->dims[1] == 64 && bt->size == sizeof g_b);
    TEST_CHECK(c->type == GGX_TYPE_BF16 && c->n_dims == 1 && c->dims[0] == 7 && c->size == sizeof g_c);
    TEST_CHECK(a->offset % 64 == 0 && bt->offset % 64 == 0 && c->offset % 64 == 0);
    TEST_CHECK(!memcmp(a->data, g_a, sizeof g_a) && !memcmp(bt->data, g_b, sizeof g_b) &&
               !memcmp(c->data, g_c, sizeof g_c));
    TEST_CHECK(a->crc32 == (uint32_t)crc32(0, (const Bytef *)g_a, sizeof g_a));
    TEST_CHECK(bt->crc32 == (uint32_t)crc32(0, (const Bytef *)g_b, sizeof g_b));
    TEST_CHECK(ggx_file_verify(f, NULL, NULL, NULL) == GGX_OK);
}

/* ---------------------------------------------------------------- crafting bad files */

static uint8_t *g_img;
static size_t g_len;

static uint8_t *img_copy(void) {
    uint8_t *b = malloc(g_len);
    memcpy(b, g_img, g_len);
    return b;
}

/* Recompute the section and header CRCs of an image (when its sections are in bounds), so a
 * crafted value reaches the structural checks instead of the CRC check. */
static void fix_crcs(uint8_t *b, size_t len) {
    uint64_t ko = ggx_rd64(b + GGX_H_KV_OFF), ks = ggx_rd64(b + GGX_H_KV_SIZE);
    uint64_t to = ggx_rd64(b + GGX_H_TT_OFF), ts = ggx_rd64(b + GGX_H_TT_SIZE);
    if (ko <= len && ks <= len - ko) ggx_wr32(b + GGX_H_KV_CRC, (uint32_t)crc32(0, b + ko, (uInt)ks));
    if (to <= len && ts <= len - to) ggx_wr32(b + GGX_H_TT_CRC, (uint32_t)crc32(0, b + to, (uInt)ts));
    ggx_wr32(b + GGX_H_HEADER_CRC, (uint32_t)crc32(0, b, GGX_H_HEADER_CRC));
}

static void expect_fail(const uint8_t *b, size_t len, ggx_status want, const char *substr, const char *what) {
    ggx_file *f = NULL;
    ggx_status s = ggx_file_open_buffer(b, len, &f);
    TEST_CHECK_MSG(s == want && f == NULL && strstr(ggx_last_error(), substr),
                   "%s: got status %d '%s', want %d with '%s'", what, (int)s, ggx_last_error(),
                   (int)want, substr);
    ggx_file_close(f);
}

/* Offset of the i-th tensor entry, and of the i-th kv entry. */
static size_t tt_entry(const uint8_t *b, int i) {
    size_t p = (size_t)ggx_rd64(b + GGX_H_TT_OFF);
    for (int k = 0; k < i; k++) p += (size_t)ggx_pad8(GGX_TT_FIXED + 8 * ggx_rd32(b + p + 8) + ggx_rd32(b + p));
    return p;
}
static size_t kv_entry(const uint8_t *b, const char *key) {
    size_t p = (size_t)ggx_rd64(b + GGX_H_KV_OFF), end = p + (size_t)ggx_rd64(b + GGX_H_KV_SIZE);
    while (p < end) {
        uint32_t kl = ggx_rd32(b + p);
        if (kl == strlen(key) && !memcmp(b + p + GGX_KV_FIXED, key, kl)) return p;
        size_t v = p + (size_t)ggx_pad8(GGX_KV_FIXED + kl);
        uint32_t t = b[p + 4], et = b[p + 5];
        uint64_t cnt = ggx_rd64(b + p + 8), vb;
        if (ggx_kv_scalar_size(t)) vb = ggx_kv_scalar_size(t);
        else if (t == GGX_KV_ARRAY && et == GGX_KV_STRING) vb = (cnt + 1) * 8 + ggx_rd64(b + v + cnt * 8);
        else if (t == GGX_KV_ARRAY) vb = cnt * ggx_kv_scalar_size(et);
        else vb = cnt;
        p = v + (size_t)ggx_pad8(vb);
    }
    return 0;
}

static void crafted_cases(void) {
    uint8_t *b;
#define CASE(mutation, want, substr)                                                           \
    do {                                                                                       \
        b = img_copy();                                                                        \
        mutation;                                                                              \
        fix_crcs(b, g_len);                                                                    \
        expect_fail(b, g_len, want, substr, #mutation);                                        \
        free(b);                                                                               \
    } while (0)
    size_t t0 = tt_entry(g_img, 0), t1 = tt_entry(g_img, 1), t2 = tt_entry(g_img, 2);
    size_t kb = kv_entry(g_img, "k.bool"), ks = kv_entry(g_img, "k.astr"), ku = kv_entry(g_img, "k.u32");
    TEST_CHECK(t0 && t1 && t2 && kb && ks && ku);

    CASE(b[0] = 'X', GGX_ERR_FORMAT, "magic");
    CASE(ggx_wr32(b + GGX_H_VERSION, 2), GGX_ERR_UNSUPPORTED, "version 2");
    CASE(ggx_wr32(b + GGX_H_BOM, 0x04030201u), GGX_ERR_FORMAT, "byte-order");
    CASE(ggx_wr32(b + GGX_H_HEADER_SIZE, 64), GGX_ERR_FORMAT, "header_size");
    CASE(ggx_wr32(b + GGX_H_ALIGN, 32), GGX_ERR_FORMAT, "alignment");
    CASE(ggx_wr32(b + GGX_H_FLAGS, 1), GGX_ERR_UNSUPPORTED, "flags");
    CASE(b[GGX_H_RESERVED + 3] = 1, GGX_ERR_FORMAT, "reserved");
    CASE(b[ggx_rd64(b + GGX_H_DATA_OFF) - 1] = 1, GGX_ERR_FORMAT, "padding before the data");
    CASE(ggx_wr64(b + GGX_H_FILE_SIZE, g_len + 1), GGX_ERR_FORMAT, "file_size");
    CASE(ggx_wr64(b + GGX_H_KV_SIZE, UINT64_MAX), GGX_ERR_FORMAT, "kv section [offset");
    CASE(ggx_wr64(b + GGX_H_KV_OFF, 64), GGX_ERR_FORMAT, "kv section offset 64 overlaps");
    CASE(ggx_wr64(b + GGX_H_KV_OFF, 132), GGX_ERR_FORMAT, "not 8-aligned");
    CASE((ggx_wr64(b + GGX_H_KV_OFF, 136), ggx_wr64(b + GGX_H_KV_SIZE, ggx_rd64(b + GGX_H_KV_SIZE) - 8)),
         GGX_ERR_FORMAT, "not contiguous");
    CASE(ggx_wr64(b + GGX_H_TT_OFF, ggx_rd64(b + GGX_H_TT_OFF) + 8), GGX_ERR_FORMAT, "");
    CASE(ggx_wr64(b + GGX_H_TT_OFF, 1ull << 62), GGX_ERR_FORMAT, "tensor table [offset");
    CASE(ggx_wr64(b + GGX_H_TT_OFF, 128), GGX_ERR_FORMAT, "tensor table offset 128 overlaps");
    CASE(ggx_wr64(b + GGX_H_DATA_SIZE, ggx_rd64(b + GGX_H_DATA_SIZE) + 64), GGX_ERR_FORMAT, "data section [offset");
    CASE(ggx_wr64(b + GGX_H_DATA_SIZE, ggx_rd64(b + GGX_H_DATA_SIZE) - 64), GGX_ERR_FORMAT, "data section ends");
    CASE(ggx_wr64(b + GGX_H_KV_COUNT, 1ull << 60), GGX_ERR_FORMAT, "kv section: count");
    CASE(ggx_wr64(b + GGX_H_KV_COUNT, 13), GGX_ERR_FORMAT, "kv section: 13 entries use");
    CASE(ggx_wr64(b + GGX_H_KV_COUNT, 15), GGX_ERR_FORMAT, "kv section: entry 14");
    CASE(ggx_wr64(b + GGX_H_TT_COUNT, 1ull << 60), GGX_ERR_FORMAT, "tensor table: count");
    CASE(ggx_wr64(b + GGX_H_TT_COUNT, 2), GGX_ERR_FORMAT, "tensor table: 2 entries use");
    /* kv entries */
    CASE(ggx_wr32(b + ku, 0xfffffff0u), GGX_ERR_FORMAT, "key length");
    CASE(ggx_wr32(b + ku, 0), GGX_ERR_FORMAT, "key length 0");
    CASE(b[ku + 4] = 77, GGX_ERR_FORMAT, "unknown value type 77");
    CASE(b[ku + 6] = 1, GGX_ERR_FORMAT, "reserved");
    CASE(ggx_wr64(b + ku + 8, 2), GGX_ERR_FORMAT, "scalar with count 2");
    CASE(b[ku + GGX_KV_FIXED + 1] = 0, GGX_ERR_FORMAT, "key contains NUL");
    CASE(b[kb + 24] = 2, GGX_ERR_FORMAT, "bool value 2");
    CASE(memcpy(b + ku + GGX_KV_FIXED, "k.i32", 5), GGX_ERR_FORMAT, "duplicate key 'k.i32'");
    CASE(ggx_wr64(b + ks + 8, 1ull << 61), GGX_ERR_FORMAT, "string array count");
    CASE(ggx_wr64(b + ks + 24 + 24, 0), GGX_ERR_FORMAT, "out of order or out of bounds");
    CASE(ggx_wr64(b + ks + 24 + 32, 1ull << 40), GGX_ERR_FORMAT, "out of order or out of bounds");
    CASE(ggx_wr64(b + ks + 24, 3), GGX_ERR_FORMAT, "offset 0 is not 0");
    CASE(b[ks + 5] = GGX_KV_BLOB, GGX_ERR_FORMAT, "not allowed");
    CASE(ggx_wr64(b + kv_entry(b, "k.blob") + 8, 1ull << 50), GGX_ERR_FORMAT, "past the end of the kv");
    CASE(ggx_wr64(b + kv_entry(b, "k.ai32") + 8, 1ull << 62), GGX_ERR_FORMAT, "array of");
    /* tensor entries: u32 name_len, type, n_dims, crc; u64 offset, size; dims; name */
    CASE(ggx_wr32(b + t1 + 4, 99), GGX_ERR_FORMAT, "unknown type 99");
    CASE(ggx_wr32(b + t1 + 8, 0), GGX_ERR_FORMAT, "n_dims 0");
    CASE(ggx_wr32(b + t1 + 8, 5), GGX_ERR_FORMAT, "n_dims 5");
    CASE(ggx_wr32(b + t1, 0x7fffffffu), GGX_ERR_FORMAT, "name length");
    CASE(b[t1 + GGX_TT_FIXED + 16 + 2] = 0, GGX_ERR_FORMAT, "name contains NUL");
    CASE(ggx_wr64(b + t0 + 16, 64), GGX_ERR_FORMAT, "overlaps the previous tensor");
    CASE((ggx_wr64(b + t1 + 16, 0)), GGX_ERR_FORMAT, "overlaps");
    CASE(ggx_wr64(b + t2 + 16, 1ull << 40), GGX_ERR_FORMAT, "past the end of the data section");
    CASE(ggx_wr64(b + t2 + 16, UINT64_MAX - 63), GGX_ERR_FORMAT, "past the end of the data section");
    CASE(ggx_wr64(b + t2 + 16, ggx_rd64(b + t2 + 16) + 8), GGX_ERR_FORMAT, "not 64-aligned");
    CASE(ggx_wr64(b + t0 + 24, 61), GGX_ERR_FORMAT, "size 61 bytes");
    CASE(ggx_wr64(b + t0 + GGX_TT_FIXED, 0), GGX_ERR_FORMAT, "dim 0 = 0");
    CASE(ggx_wr64(b + t0 + GGX_TT_FIXED, 1ull << 50), GGX_ERR_FORMAT, "not in 1..2^48");
    CASE((ggx_wr64(b + t0 + GGX_TT_FIXED, 1ull << 40), ggx_wr64(b + t0 + GGX_TT_FIXED + 8, 1ull << 40)),
         GGX_ERR_FORMAT, "element count overflows");
    CASE(ggx_wr64(b + t1 + GGX_TT_FIXED + 8, 65), GGX_ERR_FORMAT, "not a multiple of the q8_0 block");
    CASE(memcpy(b + t2 + GGX_TT_FIXED + 8, "a", 1), GGX_ERR_FORMAT, "duplicate name 'a'");
#undef CASE
}

/* ---------------------------------------------------------------- main */

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir("format"));
    rm_rf(g_dir);
    mkdir(g_dir, 0755);
    /* awkward, non-zero data */
    for (int i = 0; i < 15; i++) g_a[i] = sinf((float)i * 0.7f) * 3.0f + 0.1f;
    float src[128];
    for (int i = 0; i < 128; i++) src[i] = cosf((float)i * 0.37f) * (float)(i % 5 + 1);
    ggx_quantize_row(GGX_TYPE_Q8_0, src, g_b, 128);
    for (int i = 0; i < 7; i++) g_c[i] = ggx_f32_to_bf16((float)i - 3.3f);

    char p[4200], q[4200];
    /* 1. round trip, with data streamed in pieces of several sizes */
    size_t chunks[] = {1, 7, 64, 100000};
    for (size_t k = 0; k < sizeof chunks / sizeof *chunks; k++) {
        path_in(p, sizeof p, "sample.ggx");
        ggx_status s = write_sample(p, chunks[k]);
        TEST_CHECK_MSG(s == GGX_OK, "write (chunk %zu): %s", chunks[k], ggx_last_error());
        TEST_CHECK(count_prefixed(g_dir, "sample.ggx.tmp") == 0);
        ggx_file *f;
        s = ggx_file_open(p, &f);
        TEST_CHECK_MSG(s == GGX_OK, "open: %s", ggx_last_error());
        if (!s) {
            check_sample(f);
            ggx_file_close(f);
        }
    }
    g_img = (uint8_t *)test_read_file(p, &g_len);
    TEST_CHECK(g_img && g_len > 256);
    {
        ggx_file *f;
        TEST_CHECK(ggx_file_open_buffer(g_img, g_len, &f) == GGX_OK);
        if (f) {
            check_sample(f);
            ggx_file_close(f);
        }
    }

    /* 2. truncation at every length (every section boundary included) */
    int trunc_ok = 1;
    for (size_t L = 0; L < g_len; L++) {
        uint8_t *b = malloc(L ? L : 1);
        memcpy(b, g_img, L);
        ggx_file *f = NULL;
        if (ggx_file_open_buffer(b, L, &f) == GGX_OK || f) trunc_ok = 0;
        ggx_file_close(f);
        free(b);
    }
    TEST_CHECK_MSG(trunc_ok, "a truncated file opened");
    /* at the boundaries the message names the section that is cut */
    {
        uint64_t kv = ggx_rd64(g_img + GGX_H_KV_OFF), tt = ggx_rd64(g_img + GGX_H_TT_OFF),
                 dt = ggx_rd64(g_img + GGX_H_DATA_OFF);
        const ggx_tensor_info *dummy = NULL;
        (void)dummy;
        struct { uint64_t len; const char *msg; } cut[] = {
            {0, "header"}, {GGX_HEADER_SIZE - 1, "header"}, {kv, "kv section"},
            {kv + 8, "kv section"}, {tt, "tensor table"}, {tt + 8, "tensor table"},
            {dt, "data section"}, {dt + 64, "data section"}, {g_len - 1, "data section"},
        };
        for (size_t k = 0; k < sizeof cut / sizeof *cut; k++) {
            path_in(q, sizeof q, "cut.ggx");
            FILE *fp = fopen(q, "wb");
            fwrite(g_img, 1, (size_t)cut[k].len, fp);
            fclose(fp);
            ggx_file *f = NULL;
            ggx_status s = ggx_file_open(q, &f);
            TEST_CHECK_MSG(s == GGX_ERR_FORMAT && !f && strstr(ggx_last_error(), cut[k].msg) &&
                               strstr(ggx_last_error(), "cut.ggx"),
                           "cut at %llu: '%s'", (unsigned long long)cut[k].len, ggx_last_error());
        }
        /* bytes appended */
        uint8_t *b = malloc(g_len + 64);
        memcpy(b, g_img, g_len);
        memset(b + g_len, 0, 64);
        expect_fail(b, g_len + 64, GGX_ERR_FORMAT, "file_size", "appended");
        free(b);
    }

    /* 3. every flipped byte: in header/kv/table the open fails (CRC), in tensor data the
     *    verify fails naming that tensor, in padding the verify fails too */
    {
        uint64_t dt = ggx_rd64(g_img + GGX_H_DATA_OFF);
        int meta_ok = 1, data_ok = 1, open_ok = 1;
        for (size_t i = 0; i < g_len; i++) {
            uint8_t *b = img_copy();
            b[i] ^= 0x10;
            ggx_file *f = NULL;
            ggx_status s = ggx_file_open_buffer(b, g_len, &f);
            if (i < dt) {
                if (s == GGX_OK) meta_ok = 0;
            } else if (s != GGX_OK) {
                open_ok = 0;
            } else {
                size_t bad = 99;
                s = ggx_file_verify(f, &bad, NULL, NULL);
                size_t want = 99;
                for (size_t t = 0; t < ggx_file_n_tensors(f); t++) {
                    const ggx_tensor_info *ti = ggx_file_tensor(f, t);
                    uint64_t next = t + 1 < ggx_file_n_tensors(f) ? ggx_file_tensor(f, t + 1)->offset : g_len;
                    if (i >= ti->offset && i < next) want = t;
                }
                if (i < ggx_file_tensor(f, 0)->offset) want = 99; /* gap before the first tensor: none */
                if (want != 99 && (s != GGX_ERR_CHECKSUM || bad != want ||
                                   !strstr(ggx_last_error(), ggx_file_tensor(f, want)->name)))
                    data_ok = 0;
            }
            ggx_file_close(f);
            free(b);
        }
        TEST_CHECK_MSG(meta_ok, "a flipped header/kv/table byte went unnoticed");
        TEST_CHECK_MSG(open_ok, "a flipped data byte made the open fail");
        TEST_CHECK_MSG(data_ok, "a flipped data byte was not reported for its tensor");
    }

    /* 4. crafted structural errors with valid CRCs */
    crafted_cases();

    /* 5. writer misuse, and nothing left at the path after a failure */
    {
        path_in(p, sizeof p, "w.ggx");
        ggx_writer *w;
        int64_t d[2] = {2, 4};
        float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_set_u32(w, "x", 1) == GGX_OK);
        TEST_CHECK(ggx_writer_set_u32(w, "x", 2) == GGX_ERR_INVALID_ARG); /* duplicate key */
        ggx_writer_abort(w);
        TEST_CHECK(access(p, F_OK) != 0 && count_prefixed(g_dir, "w.ggx") == 0);

        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_add_tensor(w, "t", GGX_TYPE_F32, 2, d) == GGX_OK);
        TEST_CHECK(ggx_writer_set_u32(w, "late", 1) == GGX_ERR_INVALID_ARG); /* kv after tensors */
        ggx_writer_abort(w);

        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_add_tensor(w, "t", GGX_TYPE_F32, 2, d) == GGX_OK);
        TEST_CHECK(ggx_writer_add_tensor(w, "t", GGX_TYPE_F32, 2, d) == GGX_ERR_INVALID_ARG);
        ggx_writer_abort(w);

        int64_t bad[2] = {2, 33};
        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_add_tensor(w, "q", GGX_TYPE_Q8_0, 2, bad) == GGX_ERR_INVALID_ARG);
        TEST_CHECK(ggx_writer_finish(w) == GGX_ERR_INVALID_ARG); /* sticky error */
        TEST_CHECK(access(p, F_OK) != 0 && count_prefixed(g_dir, "w.ggx") == 0);

        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_add_tensor(w, "t", GGX_TYPE_F32, 2, d) == GGX_OK);
        TEST_CHECK(ggx_writer_write(w, data, 20) == GGX_OK);
        TEST_CHECK(ggx_writer_finish(w) == GGX_ERR_INVALID_ARG); /* 20 of 32 bytes */
        TEST_CHECK(strstr(ggx_last_error(), "'t'") != NULL);
        TEST_CHECK(access(p, F_OK) != 0 && count_prefixed(g_dir, "w.ggx") == 0);

        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_add_tensor(w, "t", GGX_TYPE_F32, 2, d) == GGX_OK);
        TEST_CHECK(ggx_writer_write(w, data, 32) == GGX_OK);
        TEST_CHECK(ggx_writer_write(w, data, 4) == GGX_ERR_INVALID_ARG); /* past the end */
        ggx_writer_abort(w);
        TEST_CHECK(access(p, F_OK) != 0 && count_prefixed(g_dir, "w.ggx") == 0);

        /* a failed write leaves an existing file untouched */
        TEST_CHECK(write_text(p, "precious") == 0);
        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_add_tensor(w, "t", GGX_TYPE_F32, 2, d) == GGX_OK);
        ggx_writer_abort(w);
        char *txt = test_read_file(p, NULL);
        TEST_CHECK(txt && !strcmp(txt, "precious"));
        free(txt);
        unlink(p);

        /* an empty model (no tensors) is still a valid file */
        TEST_CHECK(ggx_writer_open(p, &w) == GGX_OK);
        TEST_CHECK(ggx_writer_set_str(w, "general.architecture", "none") == GGX_OK);
        TEST_CHECK(ggx_writer_finish(w) == GGX_OK);
        ggx_file *f;
        TEST_CHECK(ggx_file_open(p, &f) == GGX_OK);
        if (f) {
            TEST_CHECK(ggx_file_n_tensors(f) == 0 && ggx_file_n_kv(f) == 1);
            ggx_file_close(f);
        }

        /* output "directory" that is a regular file: clear I/O error, nothing created */
        path_in(q, sizeof q, "plainfile");
        TEST_CHECK(write_text(q, "x") == 0);
        char r[4300];
        snprintf(r, sizeof r, "%s/out.ggx", q);
        w = NULL;
        TEST_CHECK(ggx_writer_open(r, &w) == GGX_ERR_IO && w == NULL);
        TEST_CHECK(strstr(ggx_last_error(), "out.ggx") != NULL);
        TEST_CHECK(ggx_writer_open("/nonexistent-dir-ggx/x.ggx", &w) == GGX_ERR_IO);
        TEST_CHECK(ggx_writer_open(g_dir, &w) == GGX_ERR_IO && strstr(ggx_last_error(), "is a directory"));

        /* not a .ggx / not there */
        TEST_CHECK(ggx_file_open(q, &f) == GGX_ERR_FORMAT && strstr(ggx_last_error(), "header"));
        TEST_CHECK(ggx_file_open("/nonexistent-ggx-file", &f) == GGX_ERR_IO);
        TEST_CHECK(ggx_file_open(g_dir, &f) == GGX_ERR_IO);
    }

    free(g_img);
    rm_rf(g_dir);
    return test_finish("test_format");
}
