/* safetensors.c — strict safetensors reader (see safetensors.h). */
#include "safetensors.h"

#include "ggx/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const k_known_unsupported[] = {
    "F64", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

int ggx_st_dtype_from_name(const char *s) {
    if (!strcmp(s, "F32")) return GGX_TYPE_F32;
    if (!strcmp(s, "F16")) return GGX_TYPE_F16;
    if (!strcmp(s, "BF16")) return GGX_TYPE_BF16;
    return -1;
}

const char *ggx_st_dtype_name(enum ggx_type t) {
    switch (t) {
    case GGX_TYPE_F32: return "F32";
    case GGX_TYPE_F16: return "F16";
    case GGX_TYPE_BF16: return "BF16";
    default: return "?";
    }
}

const char *ggx_st_shape_str(int n_dims, const int64_t *dims, char *buf, size_t cap) {
    size_t n = 0;
    if (cap == 0) return buf;
    buf[0] = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n_dims && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* A JSON number that is a non-negative integer <= 2^53 (exactly representable). */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_begin(const void *a, const void *b) {
    const ggx_st_tensor *x = *(const ggx_st_tensor *const *)a, *y = *(const ggx_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const ggx_st_tensor *const *)a)->name, (*(const ggx_st_tensor *const *)b)->name);
}

static ggx_status parse_entry(ggx_st_file *st, const cJSON *e, ggx_st_tensor *t, uint64_t data_len) {
    const char *what = st->path, *name = e->string;
    if (!cJSON_IsObject(e))
        return ggx_fail(GGX_ERR_FORMAT, "%s: header entry '%s' is not an object", what, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s': needs string 'dtype' and arrays 'shape'"
                        " and 'data_offsets'", what, name);
    int dt = ggx_st_dtype_from_name(jd->valuestring);
    if (dt < 0) {
        for (size_t i = 0; i < sizeof k_known_unsupported / sizeof *k_known_unsupported; i++)
            if (!strcmp(jd->valuestring, k_known_unsupported[i]))
                return ggx_fail(GGX_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported"
                                " (F32, F16, BF16 are)", what, name, jd->valuestring);
        return ggx_fail(GGX_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%.40s' (F32, F16,"
                        " BF16 are supported)", what, name, jd->valuestring);
    }
    t->dtype = (enum ggx_type)dt;
    int nd = cJSON_GetArraySize(js);
    if (nd > GGX_MAX_DIMS)
        return ggx_fail(GGX_ERR_UNSUPPORTED, "%s: tensor '%s': %d dims (at most %d supported)",
                        what, name, nd, GGX_MAX_DIMS);
    t->n_dims = nd;
    for (int d = 0; d < GGX_MAX_DIMS; d++) t->dims[d] = 1;
    uint64_t nel = 1;
    int d = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, js) {
        uint64_t v;
        if (!json_u64(it, &v) || v > ((uint64_t)1 << 48))
            return ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not an integer in"
                            " 0..2^48", what, name, d);
        if (v && nel > ((uint64_t)1 << 56) / v)
            return ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s': element count overflows", what, name);
        nel *= v;
        t->dims[d++] = (int64_t)v;
    }
    t->n_elements = (int64_t)nel;
    uint64_t b, en;
    if (cJSON_GetArraySize(jo) != 2 || !json_u64(cJSON_GetArrayItem(jo, 0), &b) ||
        !json_u64(cJSON_GetArrayItem(jo, 1), &en))
        return ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s': data_offsets must be two non-negative"
                        " integers", what, name);
    if (en < b)
        return ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                        "] end before they begin", what, name, b, en);
    if (en > data_len)
        return ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                        "] past the end of the data (%" PRIu64 " bytes): truncated file?",
                        what, name, b, en, data_len);
    uint64_t need = nel * ggx_type_traits_of(t->dtype)->type_size;
    if (en - b != need) {
        char sh[160];
        return ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s': data_offsets span %" PRIu64 " bytes, but"
                        " shape %s of %s needs %" PRIu64, what, name, en - b,
                        ggx_st_shape_str(nd, t->dims, sh, sizeof sh), jd->valuestring, need);
    }
    size_t nl = strlen(name);
    if (!(t->name = malloc(nl + 1))) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    memcpy(t->name, name, nl + 1);
    t->begin = b;
    t->nbytes = en - b;
    t->data = st->base + st->data_start + b;
    return GGX_OK;
}

static ggx_status parse(ggx_st_file *st) {
    const char *what = st->path;
    if (st->size < 8)
        return ggx_fail(GGX_ERR_FORMAT, "%s: %" PRIu64 " bytes, too short for a safetensors"
                        " header (truncated?)", what, st->size);
    uint64_t hlen;
    memcpy(&hlen, st->base, 8);
    if (hlen > GGX_ST_MAX_HEADER)
        return ggx_fail(GGX_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the %u-byte limit"
                        " (corrupt or not a safetensors file)", what, hlen, GGX_ST_MAX_HEADER);
    if (hlen > st->size - 8)
        return ggx_fail(GGX_ERR_FORMAT, "%s: header length %" PRIu64 " larger than the file (%"
                        PRIu64 " bytes): truncated or not a safetensors file", what, hlen, st->size);
    st->data_start = 8 + hlen;
    uint64_t data_len = st->size - st->data_start;
    cJSON *root = cJSON_ParseWithLength((const char *)st->base + 8, (size_t)hlen);
    ggx_status s = GGX_OK;
    ggx_st_tensor **sorted = NULL;
    if (!root || !cJSON_IsObject(root)) {
        s = ggx_fail(GGX_ERR_FORMAT, "%s: header is not a JSON object", what);
        goto done;
    }
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) if (strcmp(e->string, "__metadata__")) n++;
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    sorted = calloc(n ? n : 1, sizeof *sorted);
    if (!st->tensors || !sorted) {
        s = ggx_fail(GGX_ERR_NOMEM, "out of memory");
        goto done;
    }
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                s = ggx_fail(GGX_ERR_FORMAT, "%s: __metadata__ is not an object", what);
                goto done;
            }
            continue;
        }
        if ((s = parse_entry(st, e, &st->tensors[st->n_tensors], data_len))) goto done;
        sorted[st->n_tensors] = &st->tensors[st->n_tensors];
        st->n_tensors++;
    }
    /* no two tensors may share bytes; cJSON keeps duplicate keys, so catch those too */
    qsort(sorted, st->n_tensors, sizeof *sorted, cmp_begin);
    for (size_t i = 1; i < st->n_tensors; i++) {
        const ggx_st_tensor *a = sorted[i - 1], *b = sorted[i];
        if (a->nbytes && b->nbytes && b->begin < a->begin + a->nbytes) {
            s = ggx_fail(GGX_ERR_FORMAT, "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%"
                         PRIu64 ", %" PRIu64 ") overlap", what, a->name, a->begin,
                         a->begin + a->nbytes, b->name, b->begin, b->begin + b->nbytes);
            goto done;
        }
    }
    qsort(sorted, st->n_tensors, sizeof *sorted, cmp_name);
    for (size_t i = 1; i < st->n_tensors; i++)
        if (!strcmp(sorted[i - 1]->name, sorted[i]->name)) {
            s = ggx_fail(GGX_ERR_FORMAT, "%s: tensor '%s' appears twice", what, sorted[i]->name);
            goto done;
        }
done:
    cJSON_Delete(root);
    free(sorted);
    return s;
}

static ggx_status finish_open(ggx_st_file *st, ggx_st_file **out) {
    ggx_status s = parse(st);
    if (s) {
        ggx_st_close(st);
        return s;
    }
    *out = st;
    return GGX_OK;
}

ggx_status ggx_st_open_buffer(const void *buf, size_t len, const char *what, ggx_st_file **out) {
    *out = NULL;
    ggx_st_file *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(what ? what : "buffer"))) {
        free(st);
        return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    }
    st->base = buf;
    st->size = len;
    return finish_open(st, out);
}

ggx_status ggx_st_open(const char *path, ggx_st_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ggx_fail(GGX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ggx_fail(GGX_ERR_IO, "%s: not a readable regular file", path);
    }
    ggx_st_file *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        close(fd);
        free(st);
        return ggx_fail(GGX_ERR_NOMEM, "out of memory");
    }
    st->size = (uint64_t)sb.st_size;
    if (st->size > 0) {
        void *m = mmap(NULL, (size_t)st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(st->path);
            free(st);
            return ggx_fail(GGX_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        madvise(m, (size_t)st->size, MADV_SEQUENTIAL);
        st->base = m;
        st->mapped = 1;
    } else {
        st->base = (const uint8_t *)"";
    }
    close(fd);
    return finish_open(st, out);
}

void ggx_st_close(ggx_st_file *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    if (st->mapped) munmap((void *)st->base, (size_t)st->size);
    free(st->path);
    free(st);
}

const ggx_st_tensor *ggx_st_find(const ggx_st_file *st, const char *name) {
    for (size_t i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

void ggx_st_release(const ggx_st_file *st, const void *p, uint64_t n) {
    if (!st->mapped || !n) return;
    const long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    uintptr_t e = (uintptr_t)p + n;
    madvise((void *)a, (size_t)(e - a), MADV_DONTNEED);
}
