/*
 * ggxfile.c — the .ggx reader (see ggxfile.h, docs/format.md). It trusts nothing: every length,
 * offset, count and product read from the file is checked for bounds and overflow before use,
 * and each failure names the section and the offending value.
 */
#include "ggxfile.h"

#include "error.h"
#include "ggxfile_layout.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct ggx_file {
    const uint8_t *base;
    uint64_t size;
    int mapped; /* base is our mmap (unmap on close) */
    uint32_t version;
    size_t n_kv;
    ggx_kv *kvs;
    size_t *kv_sorted; /* indices into kvs, sorted by key */
    size_t n_tensors;
    ggx_tensor_info *tensors;
    size_t *t_sorted; /* indices into tensors, sorted by name */
    char *names;      /* NUL-terminated tensor names, one arena */
};

/* ====================================================================== helpers ====== */

static uint32_t crc32_of(const void *p, uint64_t n) {
    /* crc32_z takes size_t; chunk anyway so 32-bit size_t hosts work too. */
    uLong c = crc32(0L, Z_NULL, 0);
    const uint8_t *b = p;
    while (n) {
        uint64_t k = n > (1u << 30) ? (1u << 30) : n;
        c = crc32(c, b, (uInt)k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* a + b <= lim without overflow */
static int fits(uint64_t a, uint64_t b, uint64_t lim) { return a <= lim && b <= lim - a; }

static int cmp_str(const char *a, uint64_t alen, const char *b, uint64_t blen) {
    uint64_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, (size_t)n);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* qsort has no context argument in C11: sort through a file-static pointer is not thread-safe,
 * so sort index arrays with a small merge sort that takes the context explicitly. */
typedef int (*idx_cmp)(const void *ctx, size_t a, size_t b);
static void msort(size_t *v, size_t *tmp, size_t n, idx_cmp cmp, const void *ctx) {
    if (n < 2) return;
    size_t h = n / 2;
    msort(v, tmp, h, cmp, ctx);
    msort(v + h, tmp, n - h, cmp, ctx);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp(ctx, v[i], v[j]) <= 0 ? v[i++] : v[j++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}
/* Stable sort of the index v[0..n) by cmp; "WHAT: out of memory" if the scratch fails. */
static ggx_status sort_index(size_t *v, size_t n, idx_cmp cmp, const void *ctx, const char *what) {
    size_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return ggx_fail(GGX_ERR_NOMEM, "%s: out of memory", what);
    msort(v, tmp, n, cmp, ctx);
    free(tmp);
    return GGX_OK;
}
static int kv_cmp(const void *ctx, size_t a, size_t b) {
    const ggx_kv *kv = ctx;
    return cmp_str(kv[a].key.ptr, kv[a].key.len, kv[b].key.ptr, kv[b].key.len);
}
static int t_cmp(const void *ctx, size_t a, size_t b) {
    const ggx_tensor_info *t = ctx;
    return strcmp(t[a].name, t[b].name);
}

static const char *kv_type_name(uint32_t t) {
    static const char *n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64",
                              "f32", "f64", "bool", "string", "array", "blob"};
    return t < GGX_KV_TYPE_COUNT ? n[t] : "invalid";
}
const char *ggx_kv_type_name(enum ggx_kv_type t) { return kv_type_name((uint32_t)t); }

/* ====================================================================== kv section === */

static ggx_status parse_kv(ggx_file *f, uint64_t off, uint64_t size, uint64_t count) {
    const uint8_t *p = f->base + off;
    uint64_t pos = 0;
    /* each entry needs at least its fixed part: bounds the allocation by the section size */
    if (count > size / GGX_KV_FIXED)
        return ggx_fail(GGX_ERR_FORMAT, "kv section: count %" PRIu64 " cannot fit in %" PRIu64
                        " bytes", count, size);
    f->kvs = calloc(count ? count : 1, sizeof *f->kvs);
    f->kv_sorted = calloc(count ? count : 1, sizeof *f->kv_sorted);
    if (!f->kvs || !f->kv_sorted) return ggx_fail(GGX_ERR_NOMEM, "kv section: out of memory");
    for (uint64_t i = 0; i < count; i++) {
        if (size - pos < GGX_KV_FIXED)
            return ggx_fail(GGX_ERR_FORMAT, "kv section: entry %" PRIu64 " at offset %" PRIu64
                            " is truncated", i, off + pos);
        const uint8_t *e = p + pos;
        uint32_t klen = ggx_rd32(e), type = e[4], et = e[5];
        uint64_t cnt = ggx_rd64(e + 8);
        if (ggx_rd16(e + 6) != 0)
            return ggx_fail(GGX_ERR_FORMAT, "kv section: entry %" PRIu64 ": reserved bytes not zero", i);
        pos += GGX_KV_FIXED;
        if (klen == 0 || klen > size - pos)
            return ggx_fail(GGX_ERR_FORMAT, "kv section: entry %" PRIu64 ": key length %" PRIu32
                            " out of bounds (%" PRIu64 " bytes left)", i, klen, size - pos);
        const char *key = (const char *)p + pos;
        if (memchr(key, 0, klen))
            return ggx_fail(GGX_ERR_FORMAT, "kv section: entry %" PRIu64 ": key contains NUL", i);
        pos = ggx_pad8(pos + klen);
        if (pos > size)
            return ggx_fail(GGX_ERR_FORMAT, "kv section: entry %" PRIu64 ": key padding past end", i);
        uint64_t left = size - pos, vbytes = 0;
        const uint8_t *v = p + pos;
        int kl = klen > 200 ? 200 : (int)klen;
        if (type >= GGX_KV_TYPE_COUNT)
            return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': unknown value type %" PRIu32, kl, key, type);
        uint32_t ss = ggx_kv_scalar_size(type);
        if (ss) {
            if (cnt != 1)
                return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': scalar with count %" PRIu64, kl, key, cnt);
            vbytes = ss;
            if (vbytes <= left && type == GGX_KV_BOOL && v[0] > 1)
                return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': bool value %u", kl, key, v[0]);
        } else if (type == GGX_KV_STRING || type == GGX_KV_BLOB) {
            vbytes = cnt;
        } else { /* array */
            uint32_t es = ggx_kv_scalar_size(et);
            if (es) {
                if (cnt > left / es)
                    return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': array of %" PRIu64 " %s past the end"
                                    " of the kv section", kl, key, cnt, kv_type_name(et));
                vbytes = cnt * es;
                if (et == GGX_KV_BOOL)
                    for (uint64_t j = 0; j < cnt; j++)
                        if (v[j] > 1)
                            return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': bool element %" PRIu64
                                            " is %u", kl, key, j, v[j]);
            } else if (et == GGX_KV_STRING) {
                /* u64 offsets[cnt + 1] relative to the string bytes, then the bytes */
                if (cnt >= left / 8)
                    return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': string array count %" PRIu64
                                    " past the end of the kv section", kl, key, cnt);
                uint64_t hdr = (cnt + 1) * 8, prev = 0;
                if (ggx_rd64(v) != 0)
                    return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': string array offset 0 is not 0", kl, key);
                for (uint64_t j = 1; j <= cnt; j++) {
                    uint64_t o = ggx_rd64(v + j * 8);
                    if (o < prev || o > left - hdr)
                        return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': string %" PRIu64 " end offset %"
                                        PRIu64 " out of order or out of bounds", kl, key, j - 1, o);
                    prev = o;
                }
                vbytes = hdr + prev;
            } else {
                return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': array of element type %" PRIu32
                                " (%s) not allowed", kl, key, et, kv_type_name(et));
            }
        }
        if (vbytes > left)
            return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': value of %" PRIu64 " bytes past the end of"
                            " the kv section (%" PRIu64 " bytes left)", kl, key, vbytes, left);
        ggx_kv *kv = &f->kvs[i];
        kv->key.ptr = key;
        kv->key.len = klen;
        kv->type = (enum ggx_kv_type)type;
        kv->elem_type = (enum ggx_kv_type)(type == GGX_KV_ARRAY ? et : type);
        kv->count = cnt;
        kv->data = v;
        pos = ggx_pad8(pos + vbytes);
        if (pos > size)
            return ggx_fail(GGX_ERR_FORMAT, "kv '%.*s': value padding past the end", kl, key);
        f->kv_sorted[i] = (size_t)i;
    }
    if (pos != size)
        return ggx_fail(GGX_ERR_FORMAT, "kv section: %" PRIu64 " entries use %" PRIu64 " of its %"
                        PRIu64 " bytes", count, pos, size);
    f->n_kv = (size_t)count;
    ggx_status st = sort_index(f->kv_sorted, f->n_kv, kv_cmp, f->kvs, "kv section");
    if (st != GGX_OK) return st;
    for (size_t i = 1; i < f->n_kv; i++) {
        const ggx_kv *a = &f->kvs[f->kv_sorted[i - 1]], *b = &f->kvs[f->kv_sorted[i]];
        if (!cmp_str(a->key.ptr, a->key.len, b->key.ptr, b->key.len))
            return ggx_fail(GGX_ERR_FORMAT, "kv section: duplicate key '%.*s'",
                            (int)(a->key.len > 200 ? 200 : a->key.len), a->key.ptr);
    }
    return GGX_OK;
}

/* ====================================================================== tensor table = */

static ggx_status parse_tensors(ggx_file *f, uint64_t off, uint64_t size, uint64_t count,
                                uint64_t data_off, uint64_t data_size) {
    const uint8_t *p = f->base + off;
    if (count > size / (GGX_TT_FIXED + 8))
        return ggx_fail(GGX_ERR_FORMAT, "tensor table: count %" PRIu64 " cannot fit in %" PRIu64
                        " bytes", count, size);
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    f->t_sorted = calloc(count ? count : 1, sizeof *f->t_sorted);
    /* names + NULs are bounded by the table size */
    f->names = malloc(size + 1);
    if (!f->tensors || !f->t_sorted || !f->names)
        return ggx_fail(GGX_ERR_NOMEM, "tensor table: out of memory");
    uint64_t pos = 0, name_pos = 0, prev_end = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (size - pos < GGX_TT_FIXED)
            return ggx_fail(GGX_ERR_FORMAT, "tensor table: entry %" PRIu64 " at offset %" PRIu64
                            " is truncated", i, off + pos);
        const uint8_t *e = p + pos;
        uint32_t nlen = ggx_rd32(e), type = ggx_rd32(e + 4), nd = ggx_rd32(e + 8);
        uint32_t crc = ggx_rd32(e + 12);
        uint64_t toff = ggx_rd64(e + 16), tsize = ggx_rd64(e + 24);
        pos += GGX_TT_FIXED;
        if (nd < 1 || nd > GGX_MAX_DIMS)
            return ggx_fail(GGX_ERR_FORMAT, "tensor table: entry %" PRIu64 ": n_dims %" PRIu32
                            " not in 1..%d", i, nd, GGX_MAX_DIMS);
        if ((uint64_t)nd * 8 > size - pos)
            return ggx_fail(GGX_ERR_FORMAT, "tensor table: entry %" PRIu64 ": dims past the end", i);
        const uint8_t *dp = p + pos;
        pos += (uint64_t)nd * 8;
        if (nlen == 0 || nlen > size - pos)
            return ggx_fail(GGX_ERR_FORMAT, "tensor table: entry %" PRIu64 ": name length %" PRIu32
                            " out of bounds (%" PRIu64 " bytes left)", i, nlen, size - pos);
        const char *nm = (const char *)p + pos;
        if (memchr(nm, 0, nlen))
            return ggx_fail(GGX_ERR_FORMAT, "tensor table: entry %" PRIu64 ": name contains NUL", i);
        pos = ggx_pad8(pos + nlen);
        if (pos > size)
            return ggx_fail(GGX_ERR_FORMAT, "tensor table: entry %" PRIu64 ": name padding past end", i);
        ggx_tensor_info *t = &f->tensors[i];
        t->name = f->names + name_pos;
        memcpy(f->names + name_pos, nm, nlen);
        f->names[name_pos + nlen] = 0;
        name_pos += nlen + 1;
        const char *name = t->name;
        if (!ggx_type_valid(type))
            return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': unknown type %" PRIu32, name, type);
        t->type = (enum ggx_type)type;
        t->n_dims = (int)nd;
        uint64_t nel = 1;
        for (int d = 0; d < GGX_MAX_DIMS; d++) t->dims[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v = ggx_rd64(dp + 8 * d);
            if (v == 0 || v > ((uint64_t)1 << 48))
                return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': dim %" PRIu32 " = %" PRIu64
                                " not in 1..2^48", name, d, v);
            if (nel > ((uint64_t)1 << 56) / v)
                return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': element count overflows (dim %" PRIu32
                                " = %" PRIu64 ")", name, d, v);
            nel *= v;
            t->dims[d] = (int64_t)v;
        }
        t->n_elements = (int64_t)nel;
        const ggx_type_traits *tr = ggx_type_traits_of(t->type);
        uint64_t row = (uint64_t)t->dims[nd - 1];
        if (row % (uint64_t)tr->blck_size)
            return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': last dim %" PRIu64 " not a multiple of"
                            " the %s block size %d", name, row, tr->name, tr->blck_size);
        uint64_t expect = nel / (uint64_t)tr->blck_size * tr->type_size; /* nel <= 2^56, size <= 64 */
        if (tsize != expect)
            return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': size %" PRIu64 " bytes, but %" PRIu64
                            " elements of %s need %" PRIu64, name, tsize, nel, tr->name, expect);
        if (toff % GGX_FILE_ALIGN)
            return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': data offset %" PRIu64 " not %d-aligned",
                            name, toff, GGX_FILE_ALIGN);
        if (!fits(toff, tsize, data_size))
            return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") past the"
                            " end of the data section (%" PRIu64 " bytes)", name, toff, tsize, data_size);
        if (i > 0 && toff < prev_end)
            return ggx_fail(GGX_ERR_FORMAT, "tensor '%s': data offset %" PRIu64 " overlaps the"
                            " previous tensor (ends at %" PRIu64 ")", name, toff, prev_end);
        prev_end = toff + tsize;
        t->offset = data_off + toff;
        t->size = tsize;
        t->crc32 = crc;
        t->data = f->base + t->offset;
        f->t_sorted[i] = (size_t)i;
    }
    if (pos != size)
        return ggx_fail(GGX_ERR_FORMAT, "tensor table: %" PRIu64 " entries use %" PRIu64 " of its %"
                        PRIu64 " bytes", count, pos, size);
    f->n_tensors = (size_t)count;
    ggx_status st = sort_index(f->t_sorted, f->n_tensors, t_cmp, f->tensors, "tensor table");
    if (st != GGX_OK) return st;
    for (size_t i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[f->t_sorted[i - 1]].name, f->tensors[f->t_sorted[i]].name))
            return ggx_fail(GGX_ERR_FORMAT, "tensor table: duplicate name '%s'",
                            f->tensors[f->t_sorted[i]].name);
    return GGX_OK;
}

/* ====================================================================== header ======= */

static ggx_status check_section(const char *what, uint64_t off, uint64_t size, uint64_t min_off,
                                uint64_t align, uint64_t len) {
    if (off < min_off)
        return ggx_fail(GGX_ERR_FORMAT, "header: %s offset %" PRIu64 " overlaps the previous"
                        " section (which ends at %" PRIu64 ")", what, off, min_off);
    if (off % align)
        return ggx_fail(GGX_ERR_FORMAT, "header: %s offset %" PRIu64 " not %" PRIu64 "-aligned",
                        what, off, align);
    if (!fits(off, size, len))
        return ggx_fail(GGX_ERR_FORMAT, "%s [offset %" PRIu64 ", size %" PRIu64 "] extends past the"
                        " end of the file (%" PRIu64 " bytes): file truncated?", what, off, size, len);
    return GGX_OK;
}

static ggx_status parse(ggx_file *f) {
    const uint8_t *b = f->base;
    uint64_t len = f->size;
    if (len < GGX_HEADER_SIZE)
        return ggx_fail(GGX_ERR_FORMAT, "header: file has %" PRIu64 " bytes, the header needs %u"
                        " (truncated or not a .ggx file)", len, GGX_HEADER_SIZE);
    if (memcmp(b, GGX_MAGIC, 4))
        return ggx_fail(GGX_ERR_FORMAT, "header: bad magic %02x %02x %02x %02x (not a .ggx file)",
                        b[0], b[1], b[2], b[3]);
    uint32_t bom = ggx_rd32(b + GGX_H_BOM);
    if (bom != GGX_BOM)
        return ggx_fail(GGX_ERR_FORMAT, "header: byte-order mark 0x%08" PRIx32 " (expected 0x%08x:"
                        " only little-endian files on little-endian hosts)", bom, GGX_BOM);
    uint32_t hcrc = ggx_rd32(b + GGX_H_HEADER_CRC), hcalc = crc32_of(b, GGX_H_HEADER_CRC);
    if (hcrc != hcalc)
        return ggx_fail(GGX_ERR_CHECKSUM, "header: CRC32 0x%08" PRIx32 " does not match the"
                        " header bytes (0x%08" PRIx32 ")", hcrc, hcalc);
    f->version = ggx_rd32(b + GGX_H_VERSION);
    if (f->version != GGX_FORMAT_VERSION)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "header: format version %" PRIu32 " (this reader"
                        " knows %u)", f->version, GGX_FORMAT_VERSION);
    uint32_t hsize = ggx_rd32(b + GGX_H_HEADER_SIZE), align = ggx_rd32(b + GGX_H_ALIGN);
    if (hsize != GGX_HEADER_SIZE)
        return ggx_fail(GGX_ERR_FORMAT, "header: header_size %" PRIu32 " (expected %u)", hsize,
                        GGX_HEADER_SIZE);
    if (align != GGX_FILE_ALIGN)
        return ggx_fail(GGX_ERR_FORMAT, "header: alignment %" PRIu32 " (expected %d)", align,
                        GGX_FILE_ALIGN);
    if (ggx_rd32(b + GGX_H_FLAGS) != 0)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "header: unknown flags 0x%08" PRIx32,
                        ggx_rd32(b + GGX_H_FLAGS));
    uint64_t kv_off = ggx_rd64(b + GGX_H_KV_OFF), kv_size = ggx_rd64(b + GGX_H_KV_SIZE);
    uint64_t tt_off = ggx_rd64(b + GGX_H_TT_OFF), tt_size = ggx_rd64(b + GGX_H_TT_SIZE);
    uint64_t d_off = ggx_rd64(b + GGX_H_DATA_OFF), d_size = ggx_rd64(b + GGX_H_DATA_SIZE);
    uint64_t fsize = ggx_rd64(b + GGX_H_FILE_SIZE);
    ggx_status s;
    if ((s = check_section("kv section", kv_off, kv_size, GGX_HEADER_SIZE, 8, len))) return s;
    if ((s = check_section("tensor table", tt_off, tt_size, kv_off + kv_size, 8, len))) return s;
    if ((s = check_section("data section", d_off, d_size, tt_off + tt_size, GGX_FILE_ALIGN, len)))
        return s;
    /* sections are contiguous (no unchecked gaps): kv right after the header, the table right
     * after kv, the data at the next 64-byte boundary */
    if (kv_off != GGX_HEADER_SIZE || tt_off != kv_off + kv_size ||
        d_off != (tt_off + tt_size + GGX_FILE_ALIGN - 1) / GGX_FILE_ALIGN * GGX_FILE_ALIGN)
        return ggx_fail(GGX_ERR_FORMAT, "header: sections not contiguous (kv at %" PRIu64 ", table at %"
                        PRIu64 ", data at %" PRIu64 ")", kv_off, tt_off, d_off);
    if (fsize != len)
        return ggx_fail(GGX_ERR_FORMAT, "header: file_size %" PRIu64 " but the file has %" PRIu64
                        " bytes (truncated or appended to)", fsize, len);
    if (d_off + d_size != len)
        return ggx_fail(GGX_ERR_FORMAT, "header: data section ends at %" PRIu64 ", the file at %"
                        PRIu64, d_off + d_size, len);
    for (uint32_t i = GGX_H_RESERVED; i < GGX_H_HEADER_CRC; i++)
        if (b[i])
            return ggx_fail(GGX_ERR_FORMAT, "header: reserved byte %" PRIu32 " is not zero", i);
    /* the gap between the table and the data is not covered by a CRC: it must be zero */
    for (uint64_t o = tt_off + tt_size; o < d_off; o++)
        if (b[o])
            return ggx_fail(GGX_ERR_FORMAT, "padding before the data section is not zero (offset %"
                            PRIu64 ")", o);
    uint32_t c;
    if ((c = crc32_of(b + kv_off, kv_size)) != ggx_rd32(b + GGX_H_KV_CRC))
        return ggx_fail(GGX_ERR_CHECKSUM, "kv section: CRC32 0x%08" PRIx32 ", header says 0x%08"
                        PRIx32, c, ggx_rd32(b + GGX_H_KV_CRC));
    if ((c = crc32_of(b + tt_off, tt_size)) != ggx_rd32(b + GGX_H_TT_CRC))
        return ggx_fail(GGX_ERR_CHECKSUM, "tensor table: CRC32 0x%08" PRIx32 ", header says 0x%08"
                        PRIx32, c, ggx_rd32(b + GGX_H_TT_CRC));
    if ((s = parse_kv(f, kv_off, kv_size, ggx_rd64(b + GGX_H_KV_COUNT)))) return s;
    return parse_tensors(f, tt_off, tt_size, ggx_rd64(b + GGX_H_TT_COUNT), d_off, d_size);
}

/* ====================================================================== open/close === */

ggx_status ggx_file_open_buffer(const void *buf, size_t len, ggx_file **out) {
    *out = NULL;
    if (!buf && len) return ggx_fail(GGX_ERR_INVALID_ARG, "ggx_file_open_buffer: NULL buffer");
    ggx_file *f = calloc(1, sizeof *f);
    if (!f) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    f->base = buf;
    f->size = len;
    ggx_status s = parse(f);
    if (s) {
        ggx_file_close(f);
        return s;
    }
    *out = f;
    return GGX_OK;
}

ggx_status ggx_file_open(const char *path, ggx_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ggx_fail(GGX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ggx_fail(GGX_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ggx_fail(GGX_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < (off_t)GGX_HEADER_SIZE) {
        close(fd);
        return ggx_fail(GGX_ERR_FORMAT, "%s: header: file has %lld bytes, the header needs %u"
                        " (truncated or not a .ggx file)", path, (long long)st.st_size,
                        GGX_HEADER_SIZE);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return ggx_fail(GGX_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    ggx_file *f = calloc(1, sizeof *f);
    if (!f) {
        munmap(m, (size_t)st.st_size);
        return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    }
    f->base = m;
    f->size = (uint64_t)st.st_size;
    f->mapped = 1;
    ggx_status s = parse(f);
    if (s) {
        ggx_file_close(f);
        return ggx_fail_wrap(s, "%s", path);
    }
    *out = f;
    return GGX_OK;
}

void ggx_file_close(ggx_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    free(f->kvs);
    free(f->kv_sorted);
    free(f->tensors);
    free(f->t_sorted);
    free(f->names);
    free(f);
}

uint32_t ggx_file_version(const ggx_file *f) { return f->version; }
uint64_t ggx_file_size(const ggx_file *f) { return f->size; }

/* ====================================================================== kv access ==== */

size_t ggx_file_n_kv(const ggx_file *f) { return f->n_kv; }
const ggx_kv *ggx_file_kv(const ggx_file *f, size_t i) { return i < f->n_kv ? &f->kvs[i] : NULL; }

const ggx_kv *ggx_file_find_kv(const ggx_file *f, const char *key) {
    size_t lo = 0, hi = f->n_kv, klen = strlen(key);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ggx_kv *kv = &f->kvs[f->kv_sorted[mid]];
        int c = cmp_str(kv->key.ptr, kv->key.len, key, klen);
        if (!c) return kv;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static ggx_status find_typed(const ggx_file *f, const char *key, const ggx_kv **out) {
    *out = ggx_file_find_kv(f, key);
    if (!*out) return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s' is missing", key);
    return GGX_OK;
}

/* Integer kv as a signed 128-bit-free pair: returns 0 if kv is not an integer type. */
static int kv_int(const ggx_kv *kv, int64_t *sv, uint64_t *uv, int *is_unsigned) {
    const uint8_t *d = kv->data;
    *is_unsigned = 0;
    switch (kv->type) {
    case GGX_KV_U8: *uv = d[0]; *is_unsigned = 1; return 1;
    case GGX_KV_I8: *sv = (int8_t)d[0]; return 1;
    case GGX_KV_U16: *uv = ggx_rd16(d); *is_unsigned = 1; return 1;
    case GGX_KV_I16: *sv = (int16_t)ggx_rd16(d); return 1;
    case GGX_KV_U32: *uv = ggx_rd32(d); *is_unsigned = 1; return 1;
    case GGX_KV_I32: *sv = (int32_t)ggx_rd32(d); return 1;
    case GGX_KV_U64: *uv = ggx_rd64(d); *is_unsigned = 1; return 1;
    case GGX_KV_I64: *sv = (int64_t)ggx_rd64(d); return 1;
    default: return 0;
    }
}

/* The integer kv `key` as (sv, or uv if *is_unsigned); an error if missing or not an integer. */
static ggx_status find_int(const ggx_file *f, const char *key, int64_t *sv, uint64_t *uv,
                           int *is_unsigned) {
    const ggx_kv *kv;
    ggx_status s = find_typed(f, key, &kv);
    if (s) return s;
    if (!kv_int(kv, sv, uv, is_unsigned))
        return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s' is a %s, expected an integer", key,
                        kv_type_name(kv->type));
    return GGX_OK;
}

ggx_status ggx_file_get_u32(const ggx_file *f, const char *key, uint32_t *out) {
    int64_t sv = 0;
    uint64_t uv = 0;
    int u = 0;
    ggx_status s = find_int(f, key, &sv, &uv, &u);
    if (s) return s;
    if (u ? uv > UINT32_MAX : (sv < 0 || sv > (int64_t)UINT32_MAX))
        return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s': value does not fit u32", key);
    *out = u ? (uint32_t)uv : (uint32_t)sv;
    return GGX_OK;
}

ggx_status ggx_file_get_i64(const ggx_file *f, const char *key, int64_t *out) {
    int64_t sv = 0;
    uint64_t uv = 0;
    int u = 0;
    ggx_status s = find_int(f, key, &sv, &uv, &u);
    if (s) return s;
    if (u && uv > (uint64_t)INT64_MAX)
        return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s': value does not fit i64", key);
    *out = u ? (int64_t)uv : sv;
    return GGX_OK;
}

ggx_status ggx_file_get_f32(const ggx_file *f, const char *key, float *out) {
    const ggx_kv *kv;
    ggx_status s = find_typed(f, key, &kv);
    if (s) return s;
    if (kv->type == GGX_KV_F32) {
        memcpy(out, kv->data, 4);
    } else if (kv->type == GGX_KV_F64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
    } else {
        return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s' is a %s, expected f32", key,
                        kv_type_name(kv->type));
    }
    return GGX_OK;
}

ggx_status ggx_file_get_bool(const ggx_file *f, const char *key, bool *out) {
    const ggx_kv *kv;
    ggx_status s = find_typed(f, key, &kv);
    if (s) return s;
    if (kv->type != GGX_KV_BOOL)
        return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s' is a %s, expected bool", key,
                        kv_type_name(kv->type));
    *out = ((const uint8_t *)kv->data)[0] != 0;
    return GGX_OK;
}

ggx_status ggx_file_get_str(const ggx_file *f, const char *key, char **out) {
    *out = NULL;
    const ggx_kv *kv;
    ggx_status s = find_typed(f, key, &kv);
    if (s) return s;
    if (kv->type != GGX_KV_STRING)
        return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s' is a %s, expected string", key,
                        kv_type_name(kv->type));
    if (kv->count >= SIZE_MAX) return ggx_fail(GGX_ERR_NOMEM, "metadata key '%s': too long", key);
    char *p = malloc((size_t)kv->count + 1);
    if (!p) return ggx_fail(GGX_ERR_NOMEM, "metadata key '%s': out of memory", key);
    memcpy(p, kv->data, (size_t)kv->count);
    p[kv->count] = 0;
    *out = p;
    return GGX_OK;
}

ggx_status ggx_file_get_blob(const ggx_file *f, const char *key, const void **data, uint64_t *len) {
    const ggx_kv *kv;
    ggx_status s = find_typed(f, key, &kv);
    if (s) return s;
    if (kv->type != GGX_KV_BLOB && kv->type != GGX_KV_STRING)
        return ggx_fail(GGX_ERR_FORMAT, "metadata key '%s' is a %s, expected blob", key,
                        kv_type_name(kv->type));
    *data = kv->data;
    *len = kv->count;
    return GGX_OK;
}

ggx_str ggx_kv_array_str(const ggx_kv *kv, uint64_t i) {
    ggx_str r = {NULL, 0};
    if (kv->type != GGX_KV_ARRAY || kv->elem_type != GGX_KV_STRING || i >= kv->count) return r;
    const uint8_t *v = kv->data;
    uint64_t a = ggx_rd64(v + i * 8), b = ggx_rd64(v + (i + 1) * 8);
    r.ptr = (const char *)v + (kv->count + 1) * 8 + a;
    r.len = b - a;
    return r;
}

/* ====================================================================== tensors ====== */

size_t ggx_file_n_tensors(const ggx_file *f) { return f->n_tensors; }
const ggx_tensor_info *ggx_file_tensor(const ggx_file *f, size_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const ggx_tensor_info *ggx_file_find_tensor(const ggx_file *f, const char *name) {
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ggx_tensor_info *t = &f->tensors[f->t_sorted[mid]];
        int c = strcmp(t->name, name);
        if (!c) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

ggx_status ggx_file_verify(const ggx_file *f, size_t *bad_index,
                           void (*progress)(void *ud, uint64_t done, uint64_t total), void *ud) {
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < f->n_tensors; i++) total += f->tensors[i].size;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ggx_tensor_info *t = &f->tensors[i];
        /* crc in 64 MiB steps so the progress bar moves on big tensors */
        uLong c = crc32(0L, Z_NULL, 0);
        const uint8_t *p = t->data;
        for (uint64_t o = 0; o < t->size;) {
            uint64_t k = t->size - o > (64u << 20) ? (64u << 20) : t->size - o;
            c = crc32(c, p + o, (uInt)k);
            o += k;
            done += k;
            if (progress) progress(ud, done, total);
        }
        /* padding up to the next tensor (or the end) must be zero: a flipped bit there is
         * harmless, but a writer that leaks garbage into it is not */
        uint64_t end = t->offset + t->size;
        uint64_t next = i + 1 < f->n_tensors ? f->tensors[i + 1].offset : f->size;
        for (uint64_t o = end; o < next && o < end + GGX_FILE_ALIGN; o++)
            if (f->base[o]) {
                if (bad_index) *bad_index = i;
                return ggx_fail(GGX_ERR_CHECKSUM, "padding after tensor '%s' (#%zu) is not zero at"
                                " offset %" PRIu64 ": the file is corrupted", t->name, i, o);
            }
        if ((uint32_t)c != t->crc32) {
            if (bad_index) *bad_index = i;
            return ggx_fail(GGX_ERR_CHECKSUM, "tensor '%s' (#%zu, %" PRIu64 " bytes at offset %"
                            PRIu64 "): CRC32 0x%08" PRIx32 ", table says 0x%08" PRIx32
                            ": the data is corrupted", t->name, i, t->size, t->offset,
                            (uint32_t)c, t->crc32);
        }
    }
    if (progress) progress(ud, total, total);
    return GGX_OK;
}
