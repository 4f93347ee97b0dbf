/* cmd_quantize.c — `ggx quantize IN.ggx OUT.ggx --type T`: re-type the tensors of a .ggx file
 * (f32/f16/bf16 sources -> q8_0/q4_0/q4_x/...), streaming tensor by tensor. The per-tensor types
 * come from ggx/quant_policy.h (shared with `ggx convert`). */
#include "cmd.h"

#include "ggx/error.h"
#include "ggx/ggxfile.h"
#include "ggx/keys.h"
#include "ggx/progress.h"
#include "ggx/quant_policy.h"
#include "ggx/quants.h"
#include "ggx/types.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_THREADS 256
#define CHUNK_ELEMS (8 << 20) /* elements converted per step (32 MiB of f32 scratch) */

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx quantize IN.ggx OUT.ggx --type TYPE [options]\n"
            "       ggx quantize --list-types\n"
            "\n"
            "Re-type the weights of a .ggx file. The big 2-D matrices get TYPE; gate weights and\n"
            "biases, norms and all 1-D tensors stay f32; with a 4-bit TYPE the embedding and\n"
            "lm_head get q8_0 (docs/quantization.md has the measurements). All metadata is copied;\n"
            "general.file_type is set to TYPE.\n"
            "\n"
            "options:\n"
            "  --type TYPE              q8_0, q4_0, q4_x (or f32, f16, bf16)\n"
            "  --tensor-type REGEX=TYPE override the type of tensors whose name matches REGEX\n"
            "                           (PCRE2, searched; the first matching override wins;\n"
            "                           repeatable)\n"
            "  --dry-run                print the per-tensor plan with sizes; write nothing\n"
            "  --allow-requantize       allow re-quantizing tensors that are already quantized\n"
            "                           (errors compound: prefer quantizing from f32/bf16/f16)\n"
            "  --list-types             print the supported types: NAME BITS_PER_WEIGHT description\n"
            "  -t, --threads N          worker threads (default: all CPUs)\n"
            "  --backend cpu            quantization runs on the CPU\n"
            "  -q, --quiet              no progress bar, no plan or summary\n"
            "  -h, --help               this help\n"
            "\n"
            "examples:\n"
            "  ggx quantize xlstm-7b-bf16.ggx xlstm-7b-q4_x.ggx --type q4_x\n"
            "  ggx quantize tiny.ggx tiny-q4_0.ggx --type q4_0 --tensor-type 'proj_down=q8_0'\n"
            "  ggx quantize tiny.ggx /dev/null --type q8_0 --dry-run\n"
            "  ggx quantize --list-types\n");
}

static void fmt_bytes(char *b, size_t cap, uint64_t n) {
    if (n >= (1ull << 30)) snprintf(b, cap, "%.2f GiB", (double)n / (1ull << 30));
    else if (n >= (1ull << 20)) snprintf(b, cap, "%.2f MiB", (double)n / (1ull << 20));
    else if (n >= 1024) snprintf(b, cap, "%.1f KiB", (double)n / 1024);
    else snprintf(b, cap, "%llu B", (unsigned long long)n);
}

/* Ctrl-C must not leave the temporary output behind. */
static char g_tmp[4096];
static void on_signal(int sig) {
    if (g_tmp[0]) unlink(g_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---------------------------------------------------------------- the plan */
typedef struct plan_item {
    const ggx_tensor_info *t;
    enum ggx_type dst;
    const char *why;
    uint64_t dst_bytes;
    int64_t row_len, rows;
} plan_item;

static int is_float_src(enum ggx_type t) {
    return t == GGX_TYPE_F32 || t == GGX_TYPE_F16 || t == GGX_TYPE_BF16 ||
           ggx_type_traits_of(t)->is_quantized;
}

static ggx_status make_plan(const ggx_file *f, const ggx_quant_policy *pol, int allow_requant,
                            plan_item *items) {
    for (size_t i = 0; i < ggx_file_n_tensors(f); i++) {
        const ggx_tensor_info *t = ggx_file_tensor(f, i);
        plan_item *it = &items[i];
        it->t = t;
        it->row_len = t->n_dims ? t->dims[t->n_dims - 1] : 1;
        it->rows = it->row_len ? t->n_elements / it->row_len : 0;
        if (!is_float_src(t->type)) { /* integer tensors are copied as they are */
            it->dst = t->type;
            it->why = "not float";
        } else {
            ggx_status s = ggx_quant_policy_type(pol, t->name, t->n_dims, t->dims, &it->dst, &it->why);
            if (s) return s;
            if (ggx_type_traits_of(t->type)->is_quantized && it->dst != t->type && !allow_requant)
                return ggx_fail(GGX_ERR_INVALID_ARG,
                                "tensor %s is already %s; making it %s would compound quantization "
                                "errors (quantize from an f32/bf16/f16 file, or pass "
                                "--allow-requantize)", t->name, ggx_type_name(t->type),
                                ggx_type_name(it->dst));
        }
        it->dst_bytes = (uint64_t)it->rows * ggx_row_size(it->dst, it->row_len);
        if (it->row_len && !ggx_row_size(it->dst, it->row_len))
            return ggx_fail(GGX_ERR_SHAPE, "tensor %s: rows of %lld cannot be stored as %s", t->name,
                            (long long)it->row_len, ggx_type_name(it->dst));
    }
    return GGX_OK;
}

static void print_plan(const plan_item *items, size_t n) {
    char b1[32], b2[32], shape[64];
    printf("%-52s %-14s %-5s    %-5s %11s %11s  %s\n", "tensor", "shape", "from", "to", "in", "out",
           "why");
    for (size_t i = 0; i < n; i++) {
        const plan_item *it = &items[i];
        int k = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < it->t->n_dims && k < (int)sizeof shape - 24; d++)
            k += snprintf(shape + k, sizeof shape - k, d ? ",%lld" : "%lld", (long long)it->t->dims[d]);
        snprintf(shape + k, sizeof shape - k, "]");
        fmt_bytes(b1, sizeof b1, it->t->size);
        fmt_bytes(b2, sizeof b2, it->dst_bytes);
        printf("%-52s %-14s %-5s -> %-5s %11s %11s  %s\n", it->t->name, shape,
               ggx_type_name(it->t->type), ggx_type_name(it->dst), b1, b2, it->why);
    }
}

static void print_totals(const plan_item *items, size_t n, const char *title) {
    uint64_t cnt[GGX_TYPE_COUNT] = {0}, par[GGX_TYPE_COUNT] = {0}, byt[GGX_TYPE_COUNT] = {0};
    uint64_t in = 0, out = 0, np = 0;
    for (size_t i = 0; i < n; i++) {
        cnt[items[i].dst]++;
        par[items[i].dst] += (uint64_t)items[i].t->n_elements;
        byt[items[i].dst] += items[i].dst_bytes;
        in += items[i].t->size;
        out += items[i].dst_bytes;
        np += (uint64_t)items[i].t->n_elements;
    }
    char b1[32], b2[32];
    printf("%s\n  %-6s %8s %14s %12s %8s\n", title, "type", "tensors", "params", "bytes", "bits/w");
    for (int t = 0; t < GGX_TYPE_COUNT; t++) {
        if (!cnt[t]) continue;
        fmt_bytes(b1, sizeof b1, byt[t]);
        printf("  %-6s %8llu %14llu %12s %8.2f\n", ggx_type_name((enum ggx_type)t),
               (unsigned long long)cnt[t], (unsigned long long)par[t], b1,
               par[t] ? 8.0 * (double)byt[t] / (double)par[t] : 0.0);
    }
    fmt_bytes(b1, sizeof b1, in);
    fmt_bytes(b2, sizeof b2, out);
    printf("  %-6s %8zu %14llu %12s %8.2f   (from %s, %.1f%%)\n", "total", n,
           (unsigned long long)np, b2, np ? 8.0 * (double)out / (double)np : 0.0, b1,
           in ? 100.0 * (double)out / (double)in : 0.0);
}

/* ---------------------------------------------------------------- metadata copy */
static ggx_status copy_kv(ggx_writer *w, const ggx_kv *kv) {
    char key[1024];
    if (kv->key.len >= sizeof key) return ggx_fail(GGX_ERR_UNSUPPORTED, "metadata key too long");
    memcpy(key, kv->key.ptr, kv->key.len);
    key[kv->key.len] = 0;
    union { uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f; double d; uint8_t b; } v;
    switch (kv->type) {
    case GGX_KV_U32: memcpy(&v, kv->data, 4); return ggx_writer_set_u32(w, key, v.u32);
    case GGX_KV_I32: memcpy(&v, kv->data, 4); return ggx_writer_set_i32(w, key, v.i32);
    case GGX_KV_U64: memcpy(&v, kv->data, 8); return ggx_writer_set_u64(w, key, v.u64);
    case GGX_KV_I64: memcpy(&v, kv->data, 8); return ggx_writer_set_i64(w, key, v.i64);
    case GGX_KV_F32: memcpy(&v, kv->data, 4); return ggx_writer_set_f32(w, key, v.f);
    case GGX_KV_F64: memcpy(&v, kv->data, 8); return ggx_writer_set_f64(w, key, v.d);
    case GGX_KV_BOOL: memcpy(&v, kv->data, 1); return ggx_writer_set_bool(w, key, v.b != 0);
    case GGX_KV_BLOB: return ggx_writer_set_blob(w, key, kv->data, kv->count);
    case GGX_KV_STRING: {
        if (memchr(kv->data, 0, kv->count))
            return ggx_fail(GGX_ERR_UNSUPPORTED, "metadata %s: string with a NUL byte", key);
        char *s = malloc(kv->count + 1);
        if (!s) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
        memcpy(s, kv->data, kv->count);
        s[kv->count] = 0;
        ggx_status st = ggx_writer_set_str(w, key, s);
        free(s);
        return st;
    }
    case GGX_KV_ARRAY:
        if (kv->elem_type == GGX_KV_I32 || kv->elem_type == GGX_KV_F32) {
            void *a = malloc(kv->count * 4 + 4);
            if (!a) return ggx_fail(GGX_ERR_NOMEM, "out of memory");
            memcpy(a, kv->data, kv->count * 4);
            ggx_status st = kv->elem_type == GGX_KV_I32 ? ggx_writer_set_arr_i32(w, key, a, kv->count)
                                                        : ggx_writer_set_arr_f32(w, key, a, kv->count);
            free(a);
            return st;
        }
        if (kv->elem_type == GGX_KV_STRING) {
            char **a = calloc(kv->count + 1, sizeof *a);
            ggx_status st = a ? GGX_OK : ggx_fail(GGX_ERR_NOMEM, "out of memory");
            for (uint64_t i = 0; !st && i < kv->count; i++) {
                const ggx_str s = ggx_kv_array_str(kv, i);
                if (memchr(s.ptr, 0, s.len)) {
                    st = ggx_fail(GGX_ERR_UNSUPPORTED, "metadata %s: string with a NUL byte", key);
                } else if (!(a[i] = malloc(s.len + 1))) {
                    st = ggx_fail(GGX_ERR_NOMEM, "out of memory");
                } else {
                    memcpy(a[i], s.ptr, s.len);
                    a[i][s.len] = 0;
                }
            }
            if (!st) st = ggx_writer_set_arr_str(w, key, (const char *const *)a, kv->count);
            for (uint64_t i = 0; a && i < kv->count; i++) free(a[i]);
            free(a);
            return st;
        }
        return ggx_fail(GGX_ERR_UNSUPPORTED, "metadata %s: arrays of %s cannot be copied yet", key,
                        ggx_kv_type_name(kv->elem_type));
    default:
        return ggx_fail(GGX_ERR_UNSUPPORTED, "metadata %s: type %s cannot be copied yet", key,
                        ggx_kv_type_name(kv->type));
    }
}

/* ---------------------------------------------------------------- tensor data */
typedef struct job {
    const plan_item *it;
    int64_t r0, r1;     /* rows of this job, relative to the chunk start row `base` */
    int64_t base;
    uint8_t *out;       /* output bytes of the chunk */
    float *scratch;     /* row_len floats */
    int failed_row;     /* -1 or the first row that could not be quantized */
} job;

static void *run_job(void *arg) {
    job *j = arg;
    const plan_item *it = j->it;
    const enum ggx_type src = it->t->type, dst = it->dst;
    const size_t srow = ggx_row_size(src, it->row_len), drow = ggx_row_size(dst, it->row_len);
    j->failed_row = -1;
    for (int64_t r = j->r0; r < j->r1; r++) {
        const uint8_t *s = (const uint8_t *)it->t->data + (size_t)(j->base + r) * srow;
        uint8_t *d = j->out + (size_t)r * drow;
        if (src == dst) { memcpy(d, s, drow); continue; }
        ggx_to_f32(src, s, j->scratch, it->row_len);
        if (dst == GGX_TYPE_F32) {
            memcpy(d, j->scratch, drow);
        } else if (dst == GGX_TYPE_F16 || dst == GGX_TYPE_BF16) {
            for (int64_t k = 0; k < it->row_len; k++) {
                const uint16_t h = dst == GGX_TYPE_F16 ? ggx_f32_to_fp16(j->scratch[k])
                                                       : ggx_f32_to_bf16(j->scratch[k]);
                memcpy(d + 2 * k, &h, 2);
            }
        } else if (ggx_quantize_row(dst, j->scratch, d, it->row_len) != 0) {
            j->failed_row = (int)(j->base + r);
            return NULL;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- source pages
 * The input is mapped (ggx_file_open: read-only MAP_SHARED), so every page read stays resident in
 * this process until unmapped: quantizing a 27 GB f32 7B would pin 27 GB as RSS and fill the
 * page cache. Each chunk's source pages are handed back once the chunk is written, like the
 * converter does (convert/safetensors.c): madvise(MADV_DONTNEED) drops them from the mapping
 * (safe for a read-only file mapping: a page touched again is re-read from the file), and
 * posix_fadvise(POSIX_FADV_DONTNEED) drops them from the page cache. Only whole pages below `to`
 * are released, so a page shared with the next chunk stays until its turn. */
typedef struct src_pages {
    int fd;          /* the input file, for posix_fadvise; -1 if it could not be reopened */
    uintptr_t done;  /* address below which the tensor's pages were released (page aligned) */
    long pg;
} src_pages;

static void release_src(src_pages *sp, const ggx_tensor_info *t, uint64_t to, int last) {
    const uintptr_t base = (uintptr_t)t->data, pg = (uintptr_t)sp->pg;
    uintptr_t end = base + to;
    end = last ? (end + pg - 1) & ~(pg - 1) : end & ~(pg - 1);
    if (sp->done < (base & ~(pg - 1))) sp->done = base & ~(pg - 1);
    if (end <= sp->done) return;
    madvise((void *)sp->done, (size_t)(end - sp->done), MADV_DONTNEED);
    if (sp->fd >= 0) {
        /* the same range in file offsets: t->offset is where t->data starts */
        const int64_t off = (int64_t)t->offset - (int64_t)(base - sp->done);
        posix_fadvise(sp->fd, off < 0 ? 0 : (off_t)off, (off_t)(end - sp->done), POSIX_FADV_DONTNEED);
    }
    sp->done = end;
}

/* The source tensor's CRC32 is computed chunk by chunk as the rows are read (so each byte is read
 * once and released after use) and compared after the last chunk: a corrupted input fails the
 * command, and since the output is only renamed into place by ggx_writer_finish, it never comes
 * out as a quantized file with fresh, valid checksums. */
static uLong crc_update(uLong c, const uint8_t *p, uint64_t left) {
    while (left) {
        const uInt n = left > (1u << 30) ? (1u << 30) : (uInt)left;
        c = crc32(c, p, n);
        p += n;
        left -= n;
    }
    return c;
}

static ggx_status write_tensor(ggx_writer *w, const plan_item *it, int nthreads, uint8_t *out,
                               float *scratch, ggx_progress *prog, uint64_t *done, src_pages *sp) {
    const size_t drow = ggx_row_size(it->dst, it->row_len), srow = ggx_row_size(it->t->type, it->row_len);
    uLong crc = crc32(0L, Z_NULL, 0);
    int64_t chunk = it->row_len ? CHUNK_ELEMS / it->row_len : 1;
    if (chunk < 1) chunk = 1;
    sp->done = 0;
    for (int64_t base = 0; base < it->rows; base += chunk) {
        const int64_t n = it->rows - base < chunk ? it->rows - base : chunk;
        crc = crc_update(crc, (const uint8_t *)it->t->data + (size_t)base * srow, (uint64_t)n * srow);
        int nt = nthreads;
        if (nt > n) nt = (int)n;
        job jobs[MAX_THREADS];
        pthread_t th[MAX_THREADS];
        int running[MAX_THREADS] = {0};
        for (int k = 0; k < nt; k++) {
            jobs[k] = (job){it, n * k / nt, n * (k + 1) / nt, base, out, scratch + (size_t)k * it->row_len, -1};
            /* the last slice (or one no thread could be started for) runs on this thread */
            running[k] = k < nt - 1 && pthread_create(&th[k], NULL, run_job, &jobs[k]) == 0;
            if (!running[k]) run_job(&jobs[k]);
        }
        for (int k = 0; k < nt; k++)
            if (running[k]) pthread_join(th[k], NULL);
        for (int k = 0; k < nt; k++)
            if (jobs[k].failed_row >= 0)
                return ggx_fail(GGX_ERR_FORMAT,
                                "tensor %s, row %d: NaN, Inf or a value beyond +-60000 cannot be "
                                "stored as %s", it->t->name, jobs[k].failed_row,
                                ggx_type_name(it->dst));
        ggx_status s = ggx_writer_write(w, out, (size_t)n * drow);
        if (s) return s;
        const int last = base + n >= it->rows;
        /* a tensor's size can exceed rows * srow only by padding; the CRC covers t->size */
        if (last && it->t->size > (uint64_t)it->rows * srow)
            crc = crc_update(crc, (const uint8_t *)it->t->data + (size_t)it->rows * srow,
                             it->t->size - (uint64_t)it->rows * srow);
        release_src(sp, it->t, last ? it->t->size : (uint64_t)(base + n) * srow, last);
        *done += (uint64_t)n * srow;
        ggx_progress_update(prog, *done);
    }
    if ((uint32_t)crc != it->t->crc32)
        return ggx_fail(GGX_ERR_CHECKSUM, "tensor %s: checksum mismatch in the input (crc32 %08x, "
                        "table says %08x); the file is corrupted", it->t->name, (unsigned)crc,
                        (unsigned)it->t->crc32);
    return GGX_OK;
}

/* ---------------------------------------------------------------- main */
static int list_types(void) {
    enum ggx_type ts[16];
    const int n = ggx_quant_target_types(ts, 16);
    for (int i = 0; i < n; i++) {
        const ggx_type_traits *tr = ggx_type_traits_of(ts[i]);
        printf("%s %.2f %s\n", tr->name, tr->bits_per_weight, tr->desc);
    }
    return 0;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int ggx_cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    const char *overrides[64];
    int n_over = 0, type = -1, quiet = 0, dry = 0, allow = 0, nthreads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--list-types")) {
            return list_types();
        } else if (!strcmp(a, "--type")) {
            if (++i >= argc) goto missing;
            type = ggx_type_from_name(argv[i]);
            enum ggx_type ts[16];
            const int nt = ggx_quant_target_types(ts, 16);
            int ok = 0;
            for (int k = 0; k < nt; k++) ok |= type == (int)ts[k];
            if (!ok) {
                fprintf(stderr, "ggx quantize: unknown --type '%s' (see ggx quantize --list-types)\n",
                        argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--tensor-type")) {
            if (++i >= argc) goto missing;
            if (n_over == 64) {
                fprintf(stderr, "ggx quantize: at most 64 --tensor-type overrides\n");
                return 2;
            }
            overrides[n_over++] = argv[i];
        } else if (!strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (!strcmp(a, "--allow-requantize")) {
            allow = 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (++i >= argc) goto missing;
            char *end;
            const long v = strtol(argv[i], &end, 10);
            if (*end || v < 1 || v > MAX_THREADS) {
                fprintf(stderr, "ggx quantize: -t needs a thread count in 1..%d, got '%s'\n",
                        MAX_THREADS, argv[i]);
                return 2;
            }
            nthreads = (int)v;
        } else if (!strcmp(a, "--backend")) {
            if (++i >= argc) goto missing;
            if (strcmp(argv[i], "cpu")) {
                fprintf(stderr, "ggx quantize: quantization runs on the CPU only (--backend cpu)\n");
                return 2;
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ggx quantize: unknown option '%s' (see ggx quantize --help)\n", a);
            return 2;
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, "ggx quantize: unexpected argument '%s'\n", a);
            return 2;
        }
        continue;
    missing:
        fprintf(stderr, "ggx quantize: option %s needs a value\n", a);
        return 2;
    }
    if (!in || !out || type < 0) {
        fprintf(stderr, "ggx quantize: need IN.ggx OUT.ggx and --type TYPE\n\n");
        usage(stderr);
        return 2;
    }
    if (!dry && (!strcmp(in, out) || same_file(in, out))) {
        fprintf(stderr, "ggx quantize: OUT must be a different file than IN\n");
        return 2;
    }
    if (nthreads <= 0) {
        const long nc = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = nc < 1 ? 1 : nc > MAX_THREADS ? MAX_THREADS : (int)nc;
    }

    int rc = 1;
    ggx_file *f = NULL;
    ggx_quant_policy *pol = NULL;
    plan_item *items = NULL;
    ggx_writer *w = NULL;
    uint8_t *obuf = NULL;
    float *scratch = NULL;
    ggx_status s;
    if ((s = ggx_file_open(in, &f))) goto fail;
    if ((s = ggx_quant_policy_create((enum ggx_type)type, overrides, n_over, &pol))) goto fail;
    const size_t nt = ggx_file_n_tensors(f);
    items = calloc(nt ? nt : 1, sizeof *items);
    if (!items) { s = ggx_fail(GGX_ERR_NOMEM, "out of memory"); goto fail; }
    if ((s = make_plan(f, pol, allow, items))) goto fail;
    if (dry) {
        print_plan(items, nt);
        print_totals(items, nt, "plan:");
        rc = 0;
        goto done;
    }

    /* scratch: the output of one chunk and one f32 row per thread */
    int64_t max_row = 1;
    size_t max_out = 1;
    uint64_t total_in = 0;
    for (size_t i = 0; i < nt; i++) {
        const plan_item *it = &items[i];
        if (it->row_len > max_row) max_row = it->row_len;
        int64_t chunk = it->row_len ? CHUNK_ELEMS / it->row_len : 1;
        if (chunk < 1) chunk = 1;
        if (chunk > it->rows) chunk = it->rows;
        const size_t ob = (size_t)chunk * ggx_row_size(it->dst, it->row_len);
        if (ob > max_out) max_out = ob;
        total_in += it->t->size;
    }
    obuf = malloc(max_out);
    scratch = malloc(sizeof(float) * (size_t)max_row * (size_t)nthreads);
    if (!obuf || !scratch) { s = ggx_fail(GGX_ERR_NOMEM, "out of memory for conversion buffers"); goto fail; }

    const double t0 = ggx_time_s();
    if ((s = ggx_writer_open(out, &w))) goto fail;
    snprintf(g_tmp, sizeof g_tmp, "%s", ggx_writer_temp_path(w) ? ggx_writer_temp_path(w) : "");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    for (size_t i = 0; i < ggx_file_n_kv(f) && !s; i++) {
        const ggx_kv *kv = ggx_file_kv(f, i);
        if (kv->key.len == strlen(GGX_KEY_FILE_TYPE) &&
            !memcmp(kv->key.ptr, GGX_KEY_FILE_TYPE, kv->key.len))
            continue;
        s = copy_kv(w, kv);
    }
    if (!s) s = ggx_writer_set_str(w, GGX_KEY_FILE_TYPE, ggx_type_name((enum ggx_type)type));
    for (size_t i = 0; i < nt && !s; i++)
        s = ggx_writer_add_tensor(w, items[i].t->name, items[i].dst, items[i].t->n_dims,
                                  items[i].t->dims);
    ggx_progress prog;
    ggx_progress_begin(&prog, "quantizing", total_in, quiet);
    uint64_t done_bytes = 0;
    src_pages sp = {open(in, O_RDONLY), 0, sysconf(_SC_PAGESIZE)};
    for (size_t i = 0; i < nt && !s; i++)
        s = write_tensor(w, &items[i], nthreads, obuf, scratch, &prog, &done_bytes, &sp);
    if (sp.fd >= 0) close(sp.fd);
    if (s) {
        if (prog.enabled) fputc('\n', stderr);
        goto fail;
    }
    s = ggx_writer_finish(w); /* frees w in every case */
    w = NULL;
    g_tmp[0] = 0;
    if (s) goto fail;
    ggx_progress_end(&prog);
    if (!quiet) {
        char title[256];
        snprintf(title, sizeof title, "quantized %s -> %s (%s) in %.2f s with %d thread%s:", in, out,
                 ggx_type_name((enum ggx_type)type), ggx_time_s() - t0, nthreads,
                 nthreads == 1 ? "" : "s");
        print_totals(items, nt, title);
        /* the source pages are released as we go (release_src): this stays near one chunk */
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            printf("peak resident memory: %.1f MB (input %.1f MB)\n", ru.ru_maxrss * 1024.0 / 1e6,
                   total_in / 1e6);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "ggx quantize: %s\n", ggx_last_error());
    rc = s == GGX_ERR_INVALID_ARG ? 2 : 1;
done:
    if (w) ggx_writer_abort(w);
    g_tmp[0] = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    free(obuf);
    free(scratch);
    free(items);
    ggx_quant_policy_free(pol);
    ggx_file_close(f);
    return rc;
}
