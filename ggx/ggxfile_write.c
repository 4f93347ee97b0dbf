/*
 * ggxfile_write.c — the streaming .ggx writer (see ggxfile.h, docs/format.md).
 *
 * Metadata and the tensor table are small and kept in memory; tensor data is streamed straight
 * to a temporary file next to the output (`OUT.tmp.XXXXXX`) with the CRC computed on the way.
 * At finish the table (now with CRCs) and the header are rewritten in place, the file is fsynced
 * and renamed onto the output path, so a failed or interrupted write never leaves a partial file
 * at that path.
 */
#include "ggxfile.h"

#include "error.h"
#include "ggxfile_layout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef struct wtensor {
    uint64_t entry_pos; /* offset of its entry inside the table buffer */
    uint64_t offset;    /* relative to the data section */
    uint64_t size;
    uint32_t crc;
} wtensor;

typedef struct buf {
    uint8_t *p;
    uint64_t len, cap;
} buf;

struct ggx_writer {
    char *path, *tmp_path;
    FILE *fp;
    ggx_status err;     /* sticky: the first failure */
    buf kv, tt;
    uint64_t n_kv;
    char **keys;        /* for the duplicate check */
    wtensor *ts;
    uint64_t n_ts, cap_ts;
    uint64_t data_off, data_size;
    int started;        /* layout written, streaming data */
    uint64_t cur;       /* tensor being written */
    uint64_t cur_done;  /* bytes of it written */
    uLong crc;
};

/* ====================================================================== buffers ====== */

static int buf_reserve(buf *b, uint64_t extra) {
    if (extra > UINT64_MAX / 2 - b->len) return -1;
    uint64_t need = b->len + extra;
    if (need <= b->cap) return 0;
    uint64_t cap = b->cap ? b->cap : 4096;
    while (cap < need) cap *= 2;
    if (cap > SIZE_MAX) return -1;
    uint8_t *p = realloc(b->p, (size_t)cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}
static int buf_put(buf *b, const void *d, uint64_t n) {
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, d, (size_t)n);
    b->len += n;
    return 0;
}
static int buf_pad8(buf *b) {
    static const uint8_t z[8] = {0};
    return buf_put(b, z, ggx_pad8(b->len) - b->len);
}

/* ====================================================================== open/abort === */

const char *ggx_writer_temp_path(const ggx_writer *w) { return w ? w->tmp_path : NULL; }

ggx_status ggx_writer_open(const char *path, ggx_writer **out) {
    *out = NULL;
    if (!path || !*path) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_writer_open: empty output path");
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) /* fail now, not after writing gigabytes */
        return ggx_fail(GGX_ERR_IO, "%s: is a directory (give the output file's path)", path);
    ggx_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path);
    if (!w || !(w->path = malloc(n + 1)) || !(w->tmp_path = malloc(n + 16))) {
        if (w) free(w->path);
        free(w);
        return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    }
    memcpy(w->path, path, n + 1);
    snprintf(w->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(w->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(w->path);
        free(w->tmp_path);
        free(w);
        return ggx_fail(GGX_ERR_IO, "%s: cannot create the output file (temporary file in its"
                        " directory): %s", path, strerror(e));
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; a model file is meant to be shared */
    w->fp = fdopen(fd, "w+b");
    if (!w->fp) {
        int e = errno;
        close(fd);
        unlink(w->tmp_path);
        free(w->path);
        free(w->tmp_path);
        free(w);
        return ggx_fail(GGX_ERR_IO, "%s: fdopen: %s", path, strerror(e));
    }
    setvbuf(w->fp, NULL, _IOFBF, 1 << 20);
    *out = w;
    return GGX_OK;
}

static void writer_free(ggx_writer *w) {
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    free(w->kv.p);
    free(w->tt.p);
    free(w->ts);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

void ggx_writer_abort(ggx_writer *w) {
    if (!w) return;
    if (w->fp) fclose(w->fp);
    unlink(w->tmp_path);
    writer_free(w);
}

static ggx_status wfail(ggx_writer *w, ggx_status s) {
    if (!w->err) w->err = s;
    return s;
}

static ggx_status io_fail(ggx_writer *w, const char *what) {
    int e = errno;
    return wfail(w, ggx_fail(GGX_ERR_IO, "%s: %s failed: %s", w->path, what,
                             e ? strerror(e) : "unknown error"));
}

/* ====================================================================== metadata ===== */

static ggx_status kv_begin(ggx_writer *w, const char *key, uint32_t type, uint32_t elem,
                           uint64_t count) {
    if (w->err) return w->err;
    if (w->n_ts || w->started)
        return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: metadata '%s' set after tensors"
                                 " were declared", key));
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0 || klen > UINT32_MAX)
        return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: empty or too long metadata key"));
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: duplicate metadata key '%s'", key));
    char **nk = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *nk);
    if (!nk) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    w->keys = nk;
    if (!(nk[w->n_kv] = malloc(klen + 1))) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    memcpy(nk[w->n_kv], key, klen + 1);
    w->n_kv++;
    uint8_t e[GGX_KV_FIXED] = {0};
    ggx_wr32(e, (uint32_t)klen);
    e[4] = (uint8_t)type;
    e[5] = (uint8_t)elem;
    ggx_wr64(e + 8, count);
    if (buf_put(&w->kv, e, sizeof e) || buf_put(&w->kv, key, klen) || buf_pad8(&w->kv))
        return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    return GGX_OK;
}

static ggx_status kv_value(ggx_writer *w, const void *v, uint64_t n) {
    if (buf_put(&w->kv, v, n) || buf_pad8(&w->kv))
        return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory (metadata of %" PRIu64 " bytes)", n));
    return GGX_OK;
}

static ggx_status kv_scalar(ggx_writer *w, const char *key, uint32_t type, const void *v) {
    ggx_status s = kv_begin(w, key, type, type, 1);
    return s ? s : kv_value(w, v, ggx_kv_scalar_size(type));
}

ggx_status ggx_writer_set_u32(ggx_writer *w, const char *k, uint32_t v) { return kv_scalar(w, k, GGX_KV_U32, &v); }
ggx_status ggx_writer_set_i32(ggx_writer *w, const char *k, int32_t v) { return kv_scalar(w, k, GGX_KV_I32, &v); }
ggx_status ggx_writer_set_u64(ggx_writer *w, const char *k, uint64_t v) { return kv_scalar(w, k, GGX_KV_U64, &v); }
ggx_status ggx_writer_set_i64(ggx_writer *w, const char *k, int64_t v) { return kv_scalar(w, k, GGX_KV_I64, &v); }
ggx_status ggx_writer_set_f32(ggx_writer *w, const char *k, float v) { return kv_scalar(w, k, GGX_KV_F32, &v); }
ggx_status ggx_writer_set_f64(ggx_writer *w, const char *k, double v) { return kv_scalar(w, k, GGX_KV_F64, &v); }
ggx_status ggx_writer_set_bool(ggx_writer *w, const char *k, bool v) {
    uint8_t b = v ? 1 : 0;
    return kv_scalar(w, k, GGX_KV_BOOL, &b);
}

ggx_status ggx_writer_set_str(ggx_writer *w, const char *key, const char *v) {
    uint64_t n = v ? strlen(v) : 0;
    ggx_status s = kv_begin(w, key, GGX_KV_STRING, GGX_KV_STRING, n);
    return s ? s : kv_value(w, v, n);
}

ggx_status ggx_writer_set_blob(ggx_writer *w, const char *key, const void *data, uint64_t len) {
    ggx_status s = kv_begin(w, key, GGX_KV_BLOB, GGX_KV_BLOB, len);
    return s ? s : kv_value(w, data, len);
}

ggx_status ggx_writer_set_arr_i32(ggx_writer *w, const char *key, const int32_t *v, uint64_t n) {
    if (n > UINT64_MAX / 8) return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: array too long"));
    ggx_status s = kv_begin(w, key, GGX_KV_ARRAY, GGX_KV_I32, n);
    return s ? s : kv_value(w, v, n * 4);
}

ggx_status ggx_writer_set_arr_f32(ggx_writer *w, const char *key, const float *v, uint64_t n) {
    if (n > UINT64_MAX / 8) return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: array too long"));
    ggx_status s = kv_begin(w, key, GGX_KV_ARRAY, GGX_KV_F32, n);
    return s ? s : kv_value(w, v, n * 4);
}

ggx_status ggx_writer_set_arr_str(ggx_writer *w, const char *key, const char *const *v, uint64_t n) {
    if (n > UINT64_MAX / 16) return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: array too long"));
    ggx_status s = kv_begin(w, key, GGX_KV_ARRAY, GGX_KV_STRING, n);
    if (s) return s;
    uint64_t off = 0;
    uint8_t o[8];
    ggx_wr64(o, 0);
    if (buf_put(&w->kv, o, 8)) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    for (uint64_t i = 0; i < n; i++) {
        off += strlen(v[i]);
        ggx_wr64(o, off);
        if (buf_put(&w->kv, o, 8)) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    }
    for (uint64_t i = 0; i < n; i++)
        if (buf_put(&w->kv, v[i], strlen(v[i]))) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    if (buf_pad8(&w->kv)) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    return GGX_OK;
}

/* ====================================================================== tensors ====== */

ggx_status ggx_writer_add_tensor(ggx_writer *w, const char *name, enum ggx_type type, int n_dims,
                                 const int64_t *dims) {
    if (w->err) return w->err;
    if (w->started)
        return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: tensor '%s' declared after data"
                                 " was written", name ? name : "?"));
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0 || nlen > UINT32_MAX)
        return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: empty or too long tensor name"));
    const ggx_type_traits *tr = ggx_type_traits_of(type);
    if (!tr) return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "tensor '%s': invalid type %d", name, (int)type));
    if (n_dims < 1 || n_dims > GGX_MAX_DIMS)
        return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "tensor '%s': n_dims %d not in 1..%d", name,
                                 n_dims, GGX_MAX_DIMS));
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (dims[d] < 1 || dims[d] > ((int64_t)1 << 48) || nel > ((uint64_t)1 << 56) / (uint64_t)dims[d])
            return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "tensor '%s': bad dim %d = %" PRId64,
                                     name, d, dims[d]));
        nel *= (uint64_t)dims[d];
    }
    if (dims[n_dims - 1] % tr->blck_size)
        return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "tensor '%s': last dim %" PRId64 " is not a"
                                 " multiple of the %s block size %d", name, dims[n_dims - 1],
                                 tr->name, tr->blck_size));
    for (uint64_t i = 0; i < w->n_ts; i++) {
        const uint8_t *e = w->tt.p + w->ts[i].entry_pos;
        uint32_t ol = ggx_rd32(e), od = ggx_rd32(e + 8);
        if (ol == nlen && !memcmp(e + GGX_TT_FIXED + 8 * od, name, nlen))
            return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: duplicate tensor '%s'", name));
    }
    if (w->n_ts == w->cap_ts) {
        uint64_t c = w->cap_ts ? w->cap_ts * 2 : 64;
        wtensor *nt = realloc(w->ts, (size_t)c * sizeof *nt);
        if (!nt) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
        w->ts = nt;
        w->cap_ts = c;
    }
    wtensor *t = &w->ts[w->n_ts];
    t->size = nel / (uint64_t)tr->blck_size * tr->type_size;
    t->offset = w->n_ts ? (w->ts[w->n_ts - 1].offset + w->ts[w->n_ts - 1].size + GGX_FILE_ALIGN - 1) /
                              GGX_FILE_ALIGN * GGX_FILE_ALIGN
                        : 0;
    t->entry_pos = w->tt.len;
    t->crc = 0;
    uint8_t e[GGX_TT_FIXED];
    ggx_wr32(e, (uint32_t)nlen);
    ggx_wr32(e + 4, (uint32_t)type);
    ggx_wr32(e + 8, (uint32_t)n_dims);
    ggx_wr32(e + 12, 0); /* crc: fixed up at finish */
    ggx_wr64(e + 16, t->offset);
    ggx_wr64(e + 24, t->size);
    if (buf_put(&w->tt, e, sizeof e)) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    for (int d = 0; d < n_dims; d++) {
        uint8_t dv[8];
        ggx_wr64(dv, (uint64_t)dims[d]);
        if (buf_put(&w->tt, dv, 8)) return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    }
    if (buf_put(&w->tt, name, nlen) || buf_pad8(&w->tt))
        return wfail(w, ggx_fail(GGX_ERR_NOMEM, "out of memory"));
    w->n_ts++;
    w->data_size = t->offset + t->size;
    return GGX_OK;
}

/* ====================================================================== data ========= */

static ggx_status write_bytes(ggx_writer *w, const void *p, uint64_t n) {
    if (n && fwrite(p, 1, (size_t)n, w->fp) != n) return io_fail(w, "write");
    return GGX_OK;
}

static ggx_status write_zeros(ggx_writer *w, uint64_t n) {
    static const uint8_t z[GGX_FILE_ALIGN] = {0};
    while (n) {
        uint64_t k = n > sizeof z ? sizeof z : n;
        ggx_status s = write_bytes(w, z, k);
        if (s) return s;
        n -= k;
    }
    return GGX_OK;
}

/* Writes placeholder header, kv section and table; positions the stream at the data section. */
static ggx_status start_data(ggx_writer *w) {
    uint64_t tt_off = GGX_HEADER_SIZE + w->kv.len;
    w->data_off = (tt_off + w->tt.len + GGX_FILE_ALIGN - 1) / GGX_FILE_ALIGN * GGX_FILE_ALIGN;
    ggx_status s;
    if ((s = write_zeros(w, GGX_HEADER_SIZE)) || (s = write_bytes(w, w->kv.p, w->kv.len)) ||
        (s = write_bytes(w, w->tt.p, w->tt.len)) ||
        (s = write_zeros(w, w->data_off - tt_off - w->tt.len)))
        return s;
    w->started = 1;
    w->cur = 0;
    w->cur_done = 0;
    w->crc = crc32(0L, Z_NULL, 0);
    return GGX_OK;
}

static uLong crc_update(uLong c, const uint8_t *p, uint64_t n) {
    while (n) {
        uint64_t k = n > (1u << 30) ? (1u << 30) : n;
        c = crc32(c, p, (uInt)k);
        p += k;
        n -= k;
    }
    return c;
}

ggx_status ggx_writer_write(ggx_writer *w, const void *data, size_t n) {
    if (w->err) return w->err;
    ggx_status s;
    if (!w->started && (s = start_data(w))) return s;
    const uint8_t *p = data;
    while (n) {
        if (w->cur >= w->n_ts)
            return wfail(w, ggx_fail(GGX_ERR_INVALID_ARG, "writer: %zu bytes written past the last"
                                     " declared tensor", n));
        wtensor *t = &w->ts[w->cur];
        uint64_t k = t->size - w->cur_done;
        if (k > n) k = n;
        if ((s = write_bytes(w, p, k))) return s;
        w->crc = crc_update(w->crc, p, k);
        w->cur_done += k;
        p += k;
        n -= (size_t)k;
        if (w->cur_done == t->size) { /* tensor complete: pad to the next one's offset */
            t->crc = (uint32_t)w->crc;
            uint64_t end = t->offset + t->size;
            uint64_t next = w->cur + 1 < w->n_ts ? w->ts[w->cur + 1].offset : end;
            if ((s = write_zeros(w, next - end))) return s;
            w->cur++;
            w->cur_done = 0;
            w->crc = crc32(0L, Z_NULL, 0);
        }
    }
    return GGX_OK;
}

/* ====================================================================== finish ======= */

ggx_status ggx_writer_finish(ggx_writer *w) {
    ggx_status s = w->err;
    if (!s && !w->started) s = start_data(w);
    if (!s && w->cur < w->n_ts) {
        const uint8_t *e = w->tt.p + w->ts[w->cur].entry_pos;
        s = ggx_fail(GGX_ERR_INVALID_ARG, "writer: finished with tensor '%.*s' at %" PRIu64
                     " of %" PRIu64 " bytes (%" PRIu64 " declared tensors incomplete)",
                     (int)ggx_rd32(e), (const char *)e + GGX_TT_FIXED + 8 * ggx_rd32(e + 8),
                     w->cur_done, w->ts[w->cur].size, w->n_ts - w->cur);
    }
    if (s) goto fail;
    for (uint64_t i = 0; i < w->n_ts; i++) ggx_wr32(w->tt.p + w->ts[i].entry_pos + 12, w->ts[i].crc);
    uint8_t h[GGX_HEADER_SIZE] = {0};
    uint64_t tt_off = GGX_HEADER_SIZE + w->kv.len;
    memcpy(h + GGX_H_MAGIC, GGX_MAGIC, 4);
    ggx_wr32(h + GGX_H_VERSION, GGX_FORMAT_VERSION);
    ggx_wr32(h + GGX_H_BOM, GGX_BOM);
    ggx_wr32(h + GGX_H_HEADER_SIZE, GGX_HEADER_SIZE);
    ggx_wr64(h + GGX_H_FILE_SIZE, w->data_off + w->data_size);
    ggx_wr64(h + GGX_H_KV_OFF, GGX_HEADER_SIZE);
    ggx_wr64(h + GGX_H_KV_SIZE, w->kv.len);
    ggx_wr64(h + GGX_H_KV_COUNT, w->n_kv);
    ggx_wr64(h + GGX_H_TT_OFF, tt_off);
    ggx_wr64(h + GGX_H_TT_SIZE, w->tt.len);
    ggx_wr64(h + GGX_H_TT_COUNT, w->n_ts);
    ggx_wr64(h + GGX_H_DATA_OFF, w->data_off);
    ggx_wr64(h + GGX_H_DATA_SIZE, w->data_size);
    ggx_wr32(h + GGX_H_ALIGN, GGX_FILE_ALIGN);
    ggx_wr32(h + GGX_H_FLAGS, 0);
    ggx_wr32(h + GGX_H_KV_CRC, (uint32_t)crc_update(crc32(0L, Z_NULL, 0), w->kv.p, w->kv.len));
    ggx_wr32(h + GGX_H_TT_CRC, (uint32_t)crc_update(crc32(0L, Z_NULL, 0), w->tt.p, w->tt.len));
    ggx_wr32(h + GGX_H_HEADER_CRC, (uint32_t)crc_update(crc32(0L, Z_NULL, 0), h, GGX_H_HEADER_CRC));
    if (fseeko(w->fp, 0, SEEK_SET) != 0) { s = io_fail(w, "seek"); goto fail; }
    if ((s = write_bytes(w, h, sizeof h))) goto fail;
    if (fseeko(w->fp, (off_t)tt_off, SEEK_SET) != 0) { s = io_fail(w, "seek"); goto fail; }
    if ((s = write_bytes(w, w->tt.p, w->tt.len))) goto fail;
    if (fflush(w->fp) != 0) { s = io_fail(w, "write"); goto fail; }
    if (fsync(fileno(w->fp)) != 0) { s = io_fail(w, "fsync"); goto fail; }
    FILE *fp = w->fp;
    w->fp = NULL;
    if (fclose(fp) != 0) { s = io_fail(w, "close"); goto fail; }
    if (rename(w->tmp_path, w->path) != 0) { s = io_fail(w, "rename"); goto fail; }
    writer_free(w);
    return GGX_OK;
fail:
    ggx_writer_abort(w);
    return s;
}
