/* cmd_inspect.c — `ggx inspect FILE [--verify] [--json]`: metadata, tensor table, totals. */
#include "cmd.h"

#include "ggx/error.h"
#include "ggx/ggxfile.h"
#include "ggx/progress.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: ggx inspect FILE.ggx [--verify] [--json] [--no-tensors] [--quiet]\n"
            "\n"
            "Print a .ggx file's metadata (long strings and blobs summarized), its tensor table\n"
            "(name, type, shape in PyTorch order, bytes, offset, CRC32) and totals by type.\n"
            "Opening the file already checks its structure and the header/metadata/table CRCs.\n"
            "\n"
            "options:\n"
            "  --verify       also check the CRC32 of every tensor's data; exit 1 naming the first\n"
            "                 corrupted tensor\n"
            "  --json         machine-readable output (one JSON object on stdout)\n"
            "  --no-tensors   metadata and totals only\n"
            "  -q, --quiet    print nothing but errors (with --verify: a silent integrity check)\n"
            "  -h, --help     this help\n"
            "\n"
            "examples:\n"
            "  ggx inspect model.ggx\n"
            "  ggx inspect model.ggx --verify\n"
            "  ggx inspect model.ggx --json | jq '.metadata[\"xlstm.num_blocks\"]'\n");
}

/* ---------------------------------------------------------------- text output */

static void put_escaped(const char *s, uint64_t n, uint64_t max) {
    putchar('"');
    for (uint64_t i = 0; i < n && i < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch == '\n') printf("\\n");
        else if (ch == '\t') printf("\\t");
        else if (ch < 0x20 || ch == 0x7f) printf("\\x%02x", ch);
        else putchar(ch);
    }
    putchar('"');
    if (n > max) printf("... (%" PRIu64 " bytes)", n);
}

static void put_scalar(enum ggx_kv_type t, const uint8_t *p) {
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f;
    double d;
    switch (t) {
    case GGX_KV_U8: printf("%u", p[0]); break;
    case GGX_KV_I8: printf("%d", (int8_t)p[0]); break;
    case GGX_KV_U16: memcpy(&u16, p, 2); printf("%u", u16); break;
    case GGX_KV_I16: memcpy(&u16, p, 2); printf("%d", (int16_t)u16); break;
    case GGX_KV_U32: memcpy(&u32, p, 4); printf("%" PRIu32, u32); break;
    case GGX_KV_I32: memcpy(&u32, p, 4); printf("%" PRId32, (int32_t)u32); break;
    case GGX_KV_U64: memcpy(&u64, p, 8); printf("%" PRIu64, u64); break;
    case GGX_KV_I64: memcpy(&u64, p, 8); printf("%" PRId64, (int64_t)u64); break;
    case GGX_KV_F32: memcpy(&f, p, 4); printf("%.9g", f); break;
    case GGX_KV_F64: memcpy(&d, p, 8); printf("%.17g", d); break;
    case GGX_KV_BOOL: printf("%s", p[0] ? "true" : "false"); break;
    default: printf("?"); break;
    }
}

static size_t scalar_size(enum ggx_kv_type t) {
    switch (t) {
    case GGX_KV_U8: case GGX_KV_I8: case GGX_KV_BOOL: return 1;
    case GGX_KV_U16: case GGX_KV_I16: return 2;
    case GGX_KV_U32: case GGX_KV_I32: case GGX_KV_F32: return 4;
    default: return 8;
    }
}

static void put_value(const ggx_kv *kv) {
    if (kv->type == GGX_KV_STRING) {
        put_escaped(kv->data, kv->count, 100);
    } else if (kv->type == GGX_KV_BLOB) {
        printf("<%" PRIu64 " bytes> ", kv->count);
        put_escaped(kv->data, kv->count, 40);
    } else if (kv->type == GGX_KV_ARRAY) {
        printf("[%" PRIu64 "] ", kv->count);
        for (uint64_t i = 0; i < kv->count && i < 8; i++) {
            if (i) printf(", ");
            if (kv->elem_type == GGX_KV_STRING) {
                ggx_str s = ggx_kv_array_str(kv, i);
                put_escaped(s.ptr, s.len, 40);
            } else {
                put_scalar(kv->elem_type, (const uint8_t *)kv->data + i * scalar_size(kv->elem_type));
            }
        }
        if (kv->count > 8) printf(", ...");
    } else {
        put_scalar(kv->type, kv->data);
    }
}

static void shape_str(const ggx_tensor_info *t, char *b, size_t cap) {
    size_t n = (size_t)snprintf(b, cap, "[");
    for (int d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(b + n, cap - n, "%s%" PRId64, d ? ", " : "", t->dims[d]);
    if (n < cap) snprintf(b + n, cap - n, "]");
}

static void fmt_bytes(char *b, size_t cap, uint64_t n) {
    if (n >= (1ull << 30)) snprintf(b, cap, "%.2f GiB", (double)n / (1ull << 30));
    else if (n >= (1ull << 20)) snprintf(b, cap, "%.2f MiB", (double)n / (1ull << 20));
    else if (n >= 1024) snprintf(b, cap, "%.1f KiB", (double)n / 1024);
    else snprintf(b, cap, "%llu B", (unsigned long long)n);
}

static void print_text(const char *path, const ggx_file *f, int tensors) {
    size_t nkv = ggx_file_n_kv(f), nt = ggx_file_n_tensors(f);
    char b[64];
    fmt_bytes(b, sizeof b, ggx_file_size(f));
    printf("%s: .ggx version %u, %s, %zu metadata keys, %zu tensors\n\n", path, ggx_file_version(f),
           b, nkv, nt);
    printf("metadata:\n");
    for (size_t i = 0; i < nkv; i++) {
        const ggx_kv *kv = ggx_file_kv(f, i);
        char tn[24];
        if (kv->type == GGX_KV_ARRAY) snprintf(tn, sizeof tn, "%s[]", ggx_kv_type_name(kv->elem_type));
        else snprintf(tn, sizeof tn, "%s", ggx_kv_type_name(kv->type));
        printf("  %-36.*s %-8s ", (int)kv->key.len, kv->key.ptr, tn);
        put_value(kv);
        putchar('\n');
    }
    if (tensors) {
        printf("\ntensors:\n  %4s  %-52s %-5s %-14s %12s %12s  %s\n", "#", "name", "type", "shape",
               "bytes", "offset", "crc32");
        for (size_t i = 0; i < nt; i++) {
            const ggx_tensor_info *t = ggx_file_tensor(f, i);
            char sh[96];
            shape_str(t, sh, sizeof sh);
            printf("  %4zu  %-52s %-5s %-14s %12" PRIu64 " %12" PRIu64 "  %08" PRIx32 "\n", i,
                   t->name, ggx_type_name(t->type), sh, t->size, t->offset, t->crc32);
        }
    }
    uint64_t n[GGX_TYPE_COUNT] = {0}, p[GGX_TYPE_COUNT] = {0}, by[GGX_TYPE_COUNT] = {0}, tp = 0, tb = 0;
    for (size_t i = 0; i < nt; i++) {
        const ggx_tensor_info *t = ggx_file_tensor(f, i);
        n[t->type]++;
        p[t->type] += (uint64_t)t->n_elements;
        by[t->type] += t->size;
        tp += (uint64_t)t->n_elements;
        tb += t->size;
    }
    printf("\ntotals:\n  %-6s %8s %14s %12s %8s\n", "type", "tensors", "params", "bytes", "bpw");
    for (int t = 0; t < GGX_TYPE_COUNT; t++) {
        if (!n[t]) continue;
        fmt_bytes(b, sizeof b, by[t]);
        printf("  %-6s %8" PRIu64 " %14" PRIu64 " %12s %8.3f\n", ggx_type_name((enum ggx_type)t), n[t],
               p[t], b, p[t] ? 8.0 * (double)by[t] / (double)p[t] : 0.0);
    }
    fmt_bytes(b, sizeof b, tb);
    printf("  %-6s %8zu %14" PRIu64 " %12s %8.3f\n", "total", nt, tp, b,
           tp ? 8.0 * (double)tb / (double)tp : 0.0);
}

/* ---------------------------------------------------------------- JSON output */

static cJSON *json_scalar(enum ggx_kv_type t, const uint8_t *p) {
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f;
    double d;
    switch (t) {
    case GGX_KV_U8: return cJSON_CreateNumber(p[0]);
    case GGX_KV_I8: return cJSON_CreateNumber((int8_t)p[0]);
    case GGX_KV_U16: memcpy(&u16, p, 2); return cJSON_CreateNumber(u16);
    case GGX_KV_I16: memcpy(&u16, p, 2); return cJSON_CreateNumber((int16_t)u16);
    case GGX_KV_U32: memcpy(&u32, p, 4); return cJSON_CreateNumber(u32);
    case GGX_KV_I32: memcpy(&u32, p, 4); return cJSON_CreateNumber((int32_t)u32);
    case GGX_KV_U64: memcpy(&u64, p, 8); return cJSON_CreateNumber((double)u64);
    case GGX_KV_I64: memcpy(&u64, p, 8); return cJSON_CreateNumber((double)(int64_t)u64);
    case GGX_KV_F32: memcpy(&f, p, 4); return cJSON_CreateNumber(f);
    case GGX_KV_F64: memcpy(&d, p, 8); return cJSON_CreateNumber(d);
    case GGX_KV_BOOL: return cJSON_CreateBool(p[0]);
    default: return cJSON_CreateNull();
    }
}

static cJSON *json_str(const char *p, uint64_t n) {
    char *s = malloc((size_t)n + 1);
    if (!s) return cJSON_CreateNull();
    memcpy(s, p, (size_t)n);
    s[n] = 0;
    cJSON *j = cJSON_CreateString(s);
    free(s);
    return j;
}

static int print_json(const ggx_file *f, int tensors, int verified) {
    cJSON *root = cJSON_CreateObject(), *md = cJSON_CreateObject(), *ts = cJSON_CreateArray();
    cJSON_AddNumberToObject(root, "version", ggx_file_version(f));
    cJSON_AddNumberToObject(root, "file_size", (double)ggx_file_size(f));
    if (verified) cJSON_AddBoolToObject(root, "verified", 1);
    for (size_t i = 0; i < ggx_file_n_kv(f); i++) {
        const ggx_kv *kv = ggx_file_kv(f, i);
        cJSON *v;
        if (kv->type == GGX_KV_STRING) {
            v = json_str(kv->data, kv->count);
        } else if (kv->type == GGX_KV_BLOB) {
            v = cJSON_CreateObject();
            cJSON_AddStringToObject(v, "type", "blob");
            cJSON_AddNumberToObject(v, "bytes", (double)kv->count);
        } else if (kv->type == GGX_KV_ARRAY) {
            v = cJSON_CreateArray();
            for (uint64_t k = 0; k < kv->count; k++) {
                if (kv->elem_type == GGX_KV_STRING) {
                    ggx_str s = ggx_kv_array_str(kv, k);
                    cJSON_AddItemToArray(v, json_str(s.ptr, s.len));
                } else {
                    cJSON_AddItemToArray(v, json_scalar(kv->elem_type, (const uint8_t *)kv->data +
                                                                           k * scalar_size(kv->elem_type)));
                }
            }
        } else {
            v = json_scalar(kv->type, kv->data);
        }
        char key[1024];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 1000 ? kv->key.len : 1000), kv->key.ptr);
        cJSON_AddItemToObject(md, key, v);
    }
    cJSON_AddItemToObject(root, "metadata", md);
    for (size_t i = 0; tensors && i < ggx_file_n_tensors(f); i++) {
        const ggx_tensor_info *t = ggx_file_tensor(f, i);
        cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "type", ggx_type_name(t->type));
        for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->dims[d]));
        cJSON_AddItemToObject(o, "shape", sh);
        cJSON_AddNumberToObject(o, "offset", (double)t->offset);
        cJSON_AddNumberToObject(o, "bytes", (double)t->size);
        cJSON_AddNumberToObject(o, "crc32", t->crc32);
        cJSON_AddItemToArray(ts, o);
    }
    cJSON_AddItemToObject(root, "tensors", ts);
    char *s = cJSON_Print(root);
    int ok = s != NULL;
    if (s) puts(s);
    free(s);
    cJSON_Delete(root);
    return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- main */

static void on_progress(void *ud, uint64_t done, uint64_t total) {
    ggx_progress *p = ud;
    p->total = total ? total : 1;
    ggx_progress_update(p, done);
}

int ggx_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int verify = 0, json = 0, tensors = 1, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--verify")) {
            verify = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-tensors")) {
            tensors = 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "ggx inspect: unknown option '%s' (see ggx inspect --help)\n", a);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "ggx inspect: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "ggx inspect: need a FILE.ggx\n\n");
        usage(stderr);
        return 2;
    }
    ggx_file *f;
    if (ggx_file_open(path, &f) != GGX_OK) {
        fprintf(stderr, "ggx inspect: %s\n", ggx_last_error());
        return 1;
    }
    int rc = 0;
    if (!quiet && !json) print_text(path, f, tensors);
    if (verify) {
        ggx_progress prog;
        ggx_progress_begin(&prog, "verifying", 1, quiet || json);
        size_t bad = 0;
        ggx_status s = ggx_file_verify(f, &bad, on_progress, &prog);
        ggx_progress_end(&prog);
        if (s) {
            fprintf(stderr, "ggx inspect: %s: verify failed: %s\n", path, ggx_last_error());
            rc = 1;
        } else if (!quiet && !json) {
            printf("\nverify: all %zu tensor checksums OK\n", ggx_file_n_tensors(f));
        }
    }
    if (!quiet && json && rc == 0) rc = print_json(f, tensors, verify);
    ggx_file_close(f);
    return rc;
}
