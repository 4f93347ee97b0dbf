/*
 * refdata.h — a tiny safetensors reader for the transformers reference the model tests compare
 * with (tests/data/xlstm-tiny/reference/logits.safetensors: pK.ids, pK.logits_prefill, ...).
 * Header-only, for tests; it trusts the fixture's header beyond the basic bounds.
 *
 *     ref_file r;
 *     if (ref_open(&r, test_data_path("xlstm-tiny/reference/logits.safetensors"))) fail;
 *     int64_t n, rows;
 *     const float *lg = ref_get(&r, "p0.logits_prefill", &n, &rows);  // [rows, n / rows]
 *     ref_close(&r);
 */
#ifndef GGX_TESTS_REFDATA_H
#define GGX_TESTS_REFDATA_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref_file {
    unsigned char *buf;
    size_t len;
    cJSON *hdr;
    size_t data_start;
} ref_file;

static inline void ref_close(ref_file *r) {
    cJSON_Delete(r->hdr);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Reads the whole file. 0 ok, -1 unreadable or not safetensors (r is left empty). */
static inline int ref_open(ref_file *r, const char *path) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    r->buf = len >= 8 ? malloc((size_t)len) : NULL;
    r->len = r->buf ? (size_t)len : 0;
    int ok = r->buf && fread(r->buf, 1, r->len, f) == r->len;
    fclose(f);
    uint64_t n = 0;
    if (ok) memcpy(&n, r->buf, 8);
    if (ok && n <= r->len - 8) {
        r->hdr = cJSON_ParseWithLength((const char *)r->buf + 8, (size_t)n);
        r->data_start = 8 + (size_t)n;
    }
    if (!r->hdr) {
        ref_close(r);
        return -1;
    }
    return 0;
}

/* The data of tensor `name`, its element count in *n and, if rows is not NULL, its first dim in
 * *rows; NULL (and 0 counts) if the file has no such tensor. */
static inline const void *ref_get(const ref_file *r, const char *name, int64_t *n, int64_t *rows) {
    *n = 0;
    if (rows) *rows = 0;
    cJSON *t = cJSON_GetObjectItem(r->hdr, name);
    if (!t) return NULL;
    cJSON *sh = cJSON_GetObjectItem(t, "shape"), *off = cJSON_GetObjectItem(t, "data_offsets");
    int64_t cnt = 1;
    cJSON *d;
    cJSON_ArrayForEach(d, sh) cnt *= (int64_t)d->valuedouble;
    *n = cnt;
    if (rows) *rows = (int64_t)cJSON_GetArrayItem(sh, 0)->valuedouble;
    return r->buf + r->data_start + (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
}

#endif
