/*
 * test_convert_util.h — helpers for the converter tests: load the fixture's tensors, write
 * (possibly broken) safetensors files and checkpoint directories in a scratch dir.
 *
 *     st_model m; st_model_load_fixture(&m);            // all tensors of tests/data/xlstm-tiny
 *     st_write(dir "/model.safetensors", m.t, m.n, NULL); // one shard
 *     ck_copy_aux(dir);                                   // config + tokenizer files
 */
#ifndef GGX_TEST_CONVERT_UTIL_H
#define GGX_TEST_CONVERT_UTIL_H

#include "convert/safetensors.h"
#include "ggx/types.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct st_t {
    char name[256];
    char dtype[16]; /* safetensors dtype string (may be bogus on purpose) */
    int n_dims;
    int64_t dims[4];
    uint8_t *data;
    size_t nbytes;
} st_t;

typedef struct st_model {
    st_t *t;
    int n;
} st_model;

static inline void st_model_free(st_model *m) {
    for (int i = 0; i < m->n; i++) free(m->t[i].data);
    free(m->t);
    m->t = NULL;
    m->n = 0;
}

static inline st_t *st_find(st_model *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}

static inline void st_remove(st_model *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) {
            free(m->t[i].data);
            m->t[i] = m->t[--m->n];
            return;
        }
}

static inline st_t *st_add(st_model *m, const char *name, const char *dtype, int nd,
                           const int64_t *dims, size_t nbytes) {
    m->t = realloc(m->t, (size_t)(m->n + 1) * sizeof *m->t);
    st_t *t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->n_dims = nd;
    for (int i = 0; i < nd; i++) t->dims[i] = dims[i];
    t->nbytes = nbytes;
    t->data = calloc(1, nbytes ? nbytes : 1);
    return t;
}

/* All tensors of the three fixture shards (bf16). Returns 0 on success. */
static inline int st_model_load_fixture(st_model *m) {
    memset(m, 0, sizeof *m);
    const char *shards[3] = {"xlstm-tiny/model-00001-of-00003.safetensors",
                             "xlstm-tiny/model-00002-of-00003.safetensors",
                             "xlstm-tiny/model-00003-of-00003.safetensors"};
    for (int s = 0; s < 3; s++) {
        ggx_st_file *f;
        if (ggx_st_open(test_data_path(shards[s]), &f)) {
            fprintf(stderr, "cannot load fixture: %s\n", ggx_last_error());
            return -1;
        }
        for (size_t i = 0; i < f->n_tensors; i++) {
            const ggx_st_tensor *x = &f->tensors[i];
            st_t *t = st_add(m, x->name, ggx_st_dtype_name(x->dtype), x->n_dims, x->dims, x->nbytes);
            memcpy(t->data, x->data, x->nbytes);
        }
        ggx_st_close(f);
    }
    return 0;
}

/* Re-encode every tensor (from BF16/F16/F32) as `dtype` ("F32", "F16", "BF16"). */
static inline void st_model_cast(st_model *m, const char *dtype) {
    int to = ggx_st_dtype_from_name(dtype);
    for (int i = 0; i < m->n; i++) {
        st_t *t = &m->t[i];
        int from = ggx_st_dtype_from_name(t->dtype);
        size_t n = t->nbytes / ggx_type_traits_of((enum ggx_type)from)->type_size;
        float *f = malloc(n * 4 + 4);
        ggx_to_f32((enum ggx_type)from, t->data, f, (int64_t)n);
        uint8_t *d = malloc(n * 4 + 4);
        for (size_t k = 0; k < n; k++) {
            if (to == GGX_TYPE_F32) memcpy(d + 4 * k, &f[k], 4);
            else if (to == GGX_TYPE_F16) { ggx_fp16_t h = ggx_f32_to_fp16(f[k]); memcpy(d + 2 * k, &h, 2); }
            else { ggx_bf16_t h = ggx_f32_to_bf16(f[k]); memcpy(d + 2 * k, &h, 2); }
        }
        free(f);
        free(t->data);
        t->data = d;
        t->nbytes = n * ggx_type_traits_of((enum ggx_type)to)->type_size;
        snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    }
}

/* Write a safetensors file. `offsets_override` (may be NULL) gives [begin, end] per tensor to
 * put in the header instead of the real ones (data is still laid out sequentially). */
static inline int st_write(const char *path, const st_t *t, int n, const uint64_t (*offsets_override)[2]) {
    size_t cap = 4096 + (size_t)n * 512, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = off, e = off + t[i].nbytes;
        if (offsets_override) {
            b = offsets_override[i][0];
            e = offsets_override[i][1];
        }
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name,
                                t[i].dtype);
        for (int d = 0; d < t[i].n_dims; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)t[i].dims[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)b, (unsigned long long)e);
        off += t[i].nbytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(h);
        return -1;
    }
    uint64_t hl = len;
    fwrite(&hl, 8, 1, fp);
    fwrite(h, 1, len, fp);
    for (int i = 0; i < n; i++) fwrite(t[i].data, 1, t[i].nbytes, fp);
    free(h);
    return fclose(fp) ? -1 : 0;
}

static inline int copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    if (!a || !b) {
        if (a) fclose(a);
        if (b) fclose(b);
        return -1;
    }
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, k, b);
    fclose(a);
    return fclose(b) ? -1 : 0;
}

static inline int write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    fputs(text, fp);
    return fclose(fp) ? -1 : 0;
}

/* A fresh checkpoint dir `root/name` with the fixture's config and tokenizer files. */
static inline const char *ck_dir(const char *root, const char *name, int with_aux) {
    static char buf[8][8192];
    static int k = 0;
    char *d = buf[k++ & 7];
    snprintf(d, sizeof buf[0], "%.4000s/%.200s", root, name);
    mkdir(root, 0755);
    mkdir(d, 0755);
    if (with_aux) {
        const char *files[] = {"config.json", "generation_config.json", "tokenizer.json",
                               "tokenizer_config.json"};
        const char *srcs[] = {"xlstm-tiny/config.json", "xlstm-tiny/generation_config.json",
                              "xlstm-tiny/tokenizer.json", "xlstm-tiny/tokenizer_config.json"};
        char p[8400];
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof p, "%s/%s", d, files[i]);
            copy_file(test_data_path(srcs[i]), p);
        }
    }
    return d;
}

/* Copy the whole fixture (shards + index + aux) into root/name. */
static inline const char *ck_fixture_copy(const char *root, const char *name) {
    const char *d = ck_dir(root, name, 1);
    const char *files[] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors", "model.safetensors.index.json"};
    const char *srcs[] = {"xlstm-tiny/model-00001-of-00003.safetensors",
                          "xlstm-tiny/model-00002-of-00003.safetensors",
                          "xlstm-tiny/model-00003-of-00003.safetensors",
                          "xlstm-tiny/model.safetensors.index.json"};
    char p[8400];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", d, files[i]);
        copy_file(test_data_path(srcs[i]), p);
    }
    return d;
}

/* Replace the first occurrence of `from` by `to` in a text file. Returns 0 if replaced. */
static inline int edit_file(const char *path, const char *from, const char *to) {
    size_t n;
    char *b = test_read_file(path, &n);
    if (!b) return -1;
    char *p = strstr(b, from);
    if (!p) {
        free(b);
        return -1;
    }
    FILE *fp = fopen(path, "wb");
    fwrite(b, 1, (size_t)(p - b), fp);
    fputs(to, fp);
    fputs(p + strlen(from), fp);
    fclose(fp);
    free(b);
    return 0;
}

/* Files in dir whose name starts with prefix (to catch leftover temporaries). */
static inline int count_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

static inline void rm_rf(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

#endif
