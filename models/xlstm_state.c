/*
 * xlstm_state.c — per-sequence recurrent state: create/reset/copy/free and save/load.
 *
 * Layout (backend memory, one block): for each layer, C [NH, DQK, DV], n [NH, DQK], m [NH], f32.
 * File layout (little-endian):
 *   "GGXSTATE" | u32 version=1 | u32 n_layer, n_heads, dqk, dv | u64 fingerprint |
 *   u64 state_bytes | u64 extra_len | u32 crc32(state bytes + extra) | u32 0 |
 *   state bytes | extra bytes
 * Save writes a temporary file next to the target and renames it (never a half-written file);
 * load reads and checks everything before touching the state.
 */
#include "xlstm_impl.h"

#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define XL_STATE_MAGIC "GGXSTATE"
#define XL_STATE_VERSION 1u

typedef struct xl_state_header {
    char magic[8];
    uint32_t version, n_layer, n_heads, dqk, dv;
    uint32_t pad0;
    uint64_t fingerprint, state_bytes, extra_len;
    uint32_t crc, pad1;
} xl_state_header;

static void set_layers(ggx_state *s) {
    const xl_hparams *hp = &s->model->hp;
    float *p = s->mem;
    for (int l = 0; l < hp->n_layer; l++) {
        s->layers[l].C = p;
        p += (size_t)hp->n_heads * hp->dqk * hp->dv;
        s->layers[l].n = p;
        p += (size_t)hp->n_heads * hp->dqk;
        s->layers[l].m = p;
        p += hp->n_heads;
    }
}

ggx_status ggx_state_create(ggx_model *model, ggx_state **out) {
    if (!out) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_state_create: out is NULL");
    *out = NULL;
    if (!model) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_state_create: model is NULL");
    ggx_state *s = calloc(1, sizeof *s);
    if (!s) return ggx_fail(GGX_ERR_NOMEM, "state: out of memory");
    s->model = model;
    s->layers = calloc((size_t)model->hp.n_layer, sizeof *s->layers);
    ggx_status st = s->layers ? model->be->iface.alloc(model->be, ggx_model_state_size(model), &s->mem)
                              : ggx_fail(GGX_ERR_NOMEM, "state: out of memory");
    if (st != GGX_OK) {
        ggx_state_free(s);
        return st;
    }
    set_layers(s); /* alloc zero-fills: C = n = m = 0 */
    *out = s;
    return GGX_OK;
}

void ggx_state_free(ggx_state *s) {
    if (!s) return;
    if (s->mem) s->model->be->iface.release(s->model->be, s->mem);
    free(s->layers);
    free(s);
}

void ggx_state_reset(ggx_state *s) {
    if (s) s->model->be->iface.memset0(s->model->be, s->mem, ggx_model_state_size(s->model));
}

ggx_status ggx_state_copy(ggx_state *dst, const ggx_state *src) {
    if (!dst || !src) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_state_copy: NULL state");
    if (dst->model->fingerprint != src->model->fingerprint ||
        ggx_model_state_size(dst->model) != ggx_model_state_size(src->model))
        return ggx_fail(GGX_ERR_MISMATCH, "ggx_state_copy: states of different models");
    if (dst == src) return GGX_OK;
    if (dst->model->be == src->model->be)
        return dst->model->be->iface.copy(dst->model->be, dst->mem, src->mem,
                                          ggx_model_state_size(src->model));
    /* different model objects of the same file: go through the host */
    size_t n = ggx_model_state_size(src->model);
    void *tmp = malloc(n);
    if (!tmp) return ggx_fail(GGX_ERR_NOMEM, "ggx_state_copy: out of memory");
    ggx_status st = src->model->be->iface.download(src->model->be, tmp, src->mem, n);
    if (st == GGX_OK) st = dst->model->be->iface.upload(dst->model->be, dst->mem, tmp, n);
    free(tmp);
    return st;
}

static void fill_header(const ggx_state *s, xl_state_header *h, uint64_t extra_len) {
    const xl_hparams *hp = &s->model->hp;
    memset(h, 0, sizeof *h);
    memcpy(h->magic, XL_STATE_MAGIC, 8);
    h->version = XL_STATE_VERSION;
    h->n_layer = (uint32_t)hp->n_layer;
    h->n_heads = (uint32_t)hp->n_heads;
    h->dqk = (uint32_t)hp->dqk;
    h->dv = (uint32_t)hp->dv;
    h->fingerprint = s->model->fingerprint;
    h->state_bytes = ggx_model_state_size(s->model);
    h->extra_len = extra_len;
}

ggx_status ggx_state_save(const ggx_state *s, const char *path, const void *extra,
                          size_t extra_len) {
    if (!s || !path) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_state_save: NULL argument");
    if (extra_len && !extra) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_state_save: extra is NULL");
    size_t n = ggx_model_state_size(s->model);
    char *tmp = NULL;
    FILE *f = NULL;
    ggx_status st = GGX_OK;
    void *buf = malloc(n ? n : 1);
    size_t plen = strlen(path) + 32;
    tmp = malloc(plen);
    if (!buf || !tmp) {
        st = ggx_fail(GGX_ERR_NOMEM, "ggx_state_save: out of memory");
        goto done;
    }
    if ((st = s->model->be->iface.download(s->model->be, buf, s->mem, n)) != GGX_OK) goto done;
    xl_state_header h;
    fill_header(s, &h, extra_len);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32_z(crc, buf, n);
    if (extra_len) crc = crc32_z(crc, extra, extra_len);
    h.crc = (uint32_t)crc;
    snprintf(tmp, plen, "%s.tmp.%d", path, (int)getpid());
    f = fopen(tmp, "wb");
    if (!f) {
        st = ggx_fail(GGX_ERR_IO, "state file %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (fwrite(&h, sizeof h, 1, f) != 1 || fwrite(buf, 1, n, f) != n ||
        (extra_len && fwrite(extra, 1, extra_len, f) != extra_len) || fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        st = ggx_fail(GGX_ERR_IO, "writing state file %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (fclose(f) != 0) {
        f = NULL;
        st = ggx_fail(GGX_ERR_IO, "writing state file %s: %s", tmp, strerror(errno));
        goto done;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        st = ggx_fail(GGX_ERR_IO, "renaming %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
done:
    if (f) fclose(f);
    if (st != GGX_OK && tmp) remove(tmp);
    free(tmp);
    free(buf);
    return st;
}

ggx_status ggx_state_load(ggx_state *s, const char *path, void **extra_out, size_t *extra_len_out) {
    if (extra_out) *extra_out = NULL;
    if (extra_len_out) *extra_len_out = 0;
    if (!s || !path) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_state_load: NULL argument");
    ggx_status st = GGX_OK;
    void *buf = NULL, *extra = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ggx_fail(GGX_ERR_IO, "state file %s: %s", path, strerror(errno));
    xl_state_header h, want;
    fill_header(s, &want, 0);
    if (fread(&h, sizeof h, 1, f) != 1) {
        st = ggx_fail(GGX_ERR_FORMAT, "state file %s: truncated header", path);
        goto done;
    }
    if (memcmp(h.magic, XL_STATE_MAGIC, 8) != 0) {
        st = ggx_fail(GGX_ERR_FORMAT, "%s is not a ggx state file (bad magic)", path);
        goto done;
    }
    if (h.version != XL_STATE_VERSION) {
        st = ggx_fail(GGX_ERR_UNSUPPORTED, "state file %s: version %u (this ggx reads %u)", path,
                      h.version, XL_STATE_VERSION);
        goto done;
    }
    if (h.fingerprint != want.fingerprint || h.n_layer != want.n_layer ||
        h.n_heads != want.n_heads || h.dqk != want.dqk || h.dv != want.dv ||
        h.state_bytes != want.state_bytes) {
        st = ggx_fail(GGX_ERR_MISMATCH,
                      "state file %s was saved for another model (fingerprint %016llx, %u layers "
                      "x %u heads x %ux%u; this model: %016llx, %u x %u x %ux%u)",
                      path, (unsigned long long)h.fingerprint, h.n_layer, h.n_heads, h.dqk, h.dv,
                      (unsigned long long)want.fingerprint, want.n_layer, want.n_heads, want.dqk,
                      want.dv);
        goto done;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        st = ggx_fail(GGX_ERR_IO, "state file %s: %s", path, strerror(errno));
        goto done;
    }
    long fsz = ftell(f);
    if (fsz < 0 || h.extra_len > (uint64_t)fsz ||
        (uint64_t)fsz != sizeof h + h.state_bytes + h.extra_len) {
        st = ggx_fail(GGX_ERR_FORMAT, "state file %s: size %ld, header says %llu (truncated?)",
                      path, fsz, (unsigned long long)(sizeof h + h.state_bytes + h.extra_len));
        goto done;
    }
    fseek(f, (long)sizeof h, SEEK_SET);
    buf = malloc(h.state_bytes ? h.state_bytes : 1);
    extra = malloc(h.extra_len ? h.extra_len : 1);
    if (!buf || !extra) {
        st = ggx_fail(GGX_ERR_NOMEM, "state file %s: out of memory", path);
        goto done;
    }
    if (fread(buf, 1, h.state_bytes, f) != h.state_bytes ||
        fread(extra, 1, h.extra_len, f) != h.extra_len) {
        st = ggx_fail(GGX_ERR_FORMAT, "state file %s: truncated", path);
        goto done;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32_z(crc, buf, h.state_bytes);
    if (h.extra_len) crc = crc32_z(crc, extra, h.extra_len);
    if ((uint32_t)crc != h.crc) {
        st = ggx_fail(GGX_ERR_CHECKSUM, "state file %s: checksum mismatch (corrupt)", path);
        goto done;
    }
    if ((st = s->model->be->iface.upload(s->model->be, s->mem, buf, h.state_bytes)) != GGX_OK)
        goto done;
    if (extra_out) {
        *extra_out = extra;
        extra = NULL;
    }
    if (extra_len_out) *extra_len_out = h.extra_len;
done:
    fclose(f);
    free(buf);
    free(extra);
    return st;
}
