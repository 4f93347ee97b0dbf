/*
 * fuzz_ggxfile.c — libFuzzer target for the .ggx reader: open an arbitrary buffer, and when it
 * opens, walk every metadata value through every getter and every tensor's data (verify reads
 * all of it). Any out-of-bounds read is an ASan report; the reader must only ever return errors.
 */
#include "ggx/error.h"
#include "ggx/ggxfile.h"
#include "ggx/ggxfile_layout.h"

#include <zlib.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Random mutations almost never keep the CRCs valid, so most inputs would stop at the header
 * check. Each input is therefore tried twice: as is, and with its CRCs recomputed, which lets
 * the mutations reach the structural checks behind them. */
static void fix_crcs(uint8_t *b, size_t len) {
    if (len < GGX_HEADER_SIZE) return;
    uint64_t ko = ggx_rd64(b + GGX_H_KV_OFF), ks = ggx_rd64(b + GGX_H_KV_SIZE);
    uint64_t to = ggx_rd64(b + GGX_H_TT_OFF), ts = ggx_rd64(b + GGX_H_TT_SIZE);
    if (ko <= len && ks <= len - ko) ggx_wr32(b + GGX_H_KV_CRC, (uint32_t)crc32(0, b + ko, (uInt)ks));
    if (to <= len && ts <= len - to) ggx_wr32(b + GGX_H_TT_CRC, (uint32_t)crc32(0, b + to, (uInt)ts));
    ggx_wr32(b + GGX_H_HEADER_CRC, (uint32_t)crc32(0, b, GGX_H_HEADER_CRC));
}

static void one(uint8_t *buf, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy so reads past `size` hit the redzone even inside libFuzzer's buffer */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    one(buf, size);
    fix_crcs(buf, size);
    one(buf, size);
    free(buf);
    return 0;
}

static void one(uint8_t *buf, size_t size) {
    ggx_file *f = NULL;
    if (ggx_file_open_buffer(buf, size, &f) == GGX_OK) {
        volatile uint64_t sink = 0;
        for (size_t i = 0; i < ggx_file_n_kv(f); i++) {
            const ggx_kv *kv = ggx_file_kv(f, i);
            char key[256];
            size_t kl = kv->key.len < sizeof key - 1 ? (size_t)kv->key.len : sizeof key - 1;
            memcpy(key, kv->key.ptr, kl);
            key[kl] = 0;
            uint32_t u;
            int64_t v;
            float x;
            bool b;
            char *s = NULL;
            const void *bl;
            uint64_t bn;
            if (ggx_file_get_u32(f, key, &u) == GGX_OK) sink += u;
            if (ggx_file_get_i64(f, key, &v) == GGX_OK) sink += (uint64_t)v;
            if (ggx_file_get_f32(f, key, &x) == GGX_OK) sink += (uint64_t)(x == x);
            if (ggx_file_get_bool(f, key, &b) == GGX_OK) sink += b;
            if (ggx_file_get_str(f, key, &s) == GGX_OK) sink += strlen(s);
            free(s);
            if (ggx_file_get_blob(f, key, &bl, &bn) == GGX_OK && bn) sink += ((const uint8_t *)bl)[bn - 1];
            if (kv->type == GGX_KV_ARRAY && kv->elem_type == GGX_KV_STRING) {
                for (uint64_t k = 0; k < kv->count; k++) {
                    ggx_str str = ggx_kv_array_str(kv, k);
                    if (str.len) sink += (uint8_t)str.ptr[str.len - 1];
                }
            } else if (kv->type == GGX_KV_ARRAY && kv->count) {
                /* last byte of the array's payload */
                size_t es = kv->elem_type == GGX_KV_U8 || kv->elem_type == GGX_KV_I8 || kv->elem_type == GGX_KV_BOOL ? 1
                          : kv->elem_type == GGX_KV_U16 || kv->elem_type == GGX_KV_I16 ? 2
                          : kv->elem_type == GGX_KV_U64 || kv->elem_type == GGX_KV_I64 || kv->elem_type == GGX_KV_F64 ? 8 : 4;
                sink += ((const uint8_t *)kv->data)[kv->count * es - 1];
            }
        }
        for (size_t i = 0; i < ggx_file_n_tensors(f); i++) {
            const ggx_tensor_info *t = ggx_file_tensor(f, i);
            if (ggx_file_find_tensor(f, t->name) != t) abort(); /* names are unique */
            if (t->size) sink += ((const uint8_t *)t->data)[t->size - 1];
        }
        size_t bad;
        (void)ggx_file_verify(f, &bad, NULL, NULL);
        (void)sink;
        ggx_file_close(f);
    } else if (f) {
        abort(); /* a failed open must not return a handle */
    }
}
