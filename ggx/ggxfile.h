/*
 * ggxfile.h — the .ggx single-file model format: a reader that trusts nothing and a streaming
 * writer. docs/format.md is the specification.
 *
 * Reading:
 *     ggx_file *f;
 *     if (ggx_file_open("m.ggx", &f) != GGX_OK) { puts(ggx_last_error()); ... }
 *     uint32_t n_blocks; ggx_file_get_u32(f, "xlstm.num_blocks", &n_blocks);
 *     const ggx_tensor_info *t = ggx_file_find_tensor(f, "lm_head.weight");
 *     // t->data points into the read-only mapping; valid until ggx_file_close(f)
 *     ggx_file_close(f);
 *
 * Writing (streams tensor by tensor; the output appears at `path` only on success):
 *     ggx_writer *w; ggx_writer_open("out.ggx", &w);
 *     ggx_writer_set_str(w, "general.architecture", "xlstm");
 *     ggx_writer_add_tensor(w, "lm_head.weight", GGX_TYPE_BF16, 2, (int64_t[]){2048, 256});
 *     ... (declare all tensors, then write their data in the same order)
 *     ggx_writer_write(w, data, nbytes);       // any number of calls per tensor
 *     ggx_writer_finish(w);                    // or ggx_writer_abort(w) on failure
 *
 * Dims are in PyTorch order (outermost first; [out, in] for linear weights) and are never
 * reversed anywhere in ggx. All integers little-endian.
 */
#ifndef GGX_GGXFILE_H
#define GGX_GGXFILE_H

#include "ggx.h"
#include "types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGX_MAX_DIMS 4
#define GGX_FILE_ALIGN 64 /* alignment of every tensor's data, in bytes */

/* ---- metadata values ---- */
enum ggx_kv_type {
    GGX_KV_U8 = 0, GGX_KV_I8, GGX_KV_U16, GGX_KV_I16, GGX_KV_U32, GGX_KV_I32,
    GGX_KV_U64, GGX_KV_I64, GGX_KV_F32, GGX_KV_F64, GGX_KV_BOOL,
    GGX_KV_STRING, /* UTF-8 bytes, length-prefixed (not NUL-terminated in the file) */
    GGX_KV_ARRAY,  /* elements of one scalar or string type */
    GGX_KV_BLOB,   /* opaque bytes (e.g. the original tokenizer.json) */
    GGX_KV_TYPE_COUNT
};

typedef struct ggx_str {
    const char *ptr; /* points into the mapping; NOT NUL-terminated */
    uint64_t len;
} ggx_str;

typedef struct ggx_kv {
    ggx_str key;
    enum ggx_kv_type type;
    enum ggx_kv_type elem_type; /* for arrays */
    uint64_t count;             /* array length; 1 for scalars; byte length for strings/blobs */
    const void *data;           /* raw little-endian value(s) in the mapping; for string arrays
                                   use ggx_kv_array_str() */
} ggx_kv;

typedef struct ggx_tensor_info {
    const char *name;   /* NUL-terminated copy owned by the ggx_file */
    enum ggx_type type;
    int n_dims;
    int64_t dims[GGX_MAX_DIMS]; /* PyTorch order; unused dims are 1 */
    int64_t n_elements;
    uint64_t offset;    /* absolute file offset of the data (aligned to GGX_FILE_ALIGN) */
    uint64_t size;      /* bytes */
    uint32_t crc32;     /* zlib crc32 of the data */
    const void *data;   /* into the read-only mapping */
} ggx_tensor_info;

typedef struct ggx_file ggx_file;

/* ---- reader ---- */
ggx_status ggx_file_open(const char *path, ggx_file **out);
/* Same checks on an in-memory image (used by the fuzzer); buf must outlive the ggx_file. */
ggx_status ggx_file_open_buffer(const void *buf, size_t len, ggx_file **out);
void ggx_file_close(ggx_file *f);

uint32_t ggx_file_version(const ggx_file *f);
uint64_t ggx_file_size(const ggx_file *f);

size_t ggx_file_n_kv(const ggx_file *f);
const ggx_kv *ggx_file_kv(const ggx_file *f, size_t i);
const ggx_kv *ggx_file_find_kv(const ggx_file *f, const char *key); /* NULL if absent */
/* Typed getters: GGX_ERR_FORMAT naming the key if absent or of another type. Integer getters
 * accept any integer kv type whose value fits. get_str returns a malloc'ed NUL-terminated copy. */
ggx_status ggx_file_get_u32(const ggx_file *f, const char *key, uint32_t *out);
ggx_status ggx_file_get_i64(const ggx_file *f, const char *key, int64_t *out);
ggx_status ggx_file_get_f32(const ggx_file *f, const char *key, float *out); /* f32 or f64 */
ggx_status ggx_file_get_bool(const ggx_file *f, const char *key, bool *out);
ggx_status ggx_file_get_str(const ggx_file *f, const char *key, char **out);
ggx_status ggx_file_get_blob(const ggx_file *f, const char *key, const void **data, uint64_t *len);
/* i-th string of a string array (bounds already checked at open). */
ggx_str ggx_kv_array_str(const ggx_kv *kv, uint64_t i);
/* "u32", "string", ... ("invalid" if out of range). */
const char *ggx_kv_type_name(enum ggx_kv_type t);

size_t ggx_file_n_tensors(const ggx_file *f);
const ggx_tensor_info *ggx_file_tensor(const ggx_file *f, size_t i);
const ggx_tensor_info *ggx_file_find_tensor(const ggx_file *f, const char *name);

/* Check the CRC32 of every tensor's data. On mismatch: GGX_ERR_CHECKSUM naming the first bad
 * tensor, and *bad_index (if non-NULL) set to its index. `progress` may be NULL. */
ggx_status ggx_file_verify(const ggx_file *f, size_t *bad_index,
                           void (*progress)(void *ud, uint64_t done, uint64_t total), void *ud);

/* ---- writer ---- */
typedef struct ggx_writer ggx_writer;

/* Creates a temporary file next to `path` (same directory) that becomes `path` on finish. */
ggx_status ggx_writer_open(const char *path, ggx_writer **out);
ggx_status ggx_writer_set_u32(ggx_writer *w, const char *key, uint32_t v);
ggx_status ggx_writer_set_i32(ggx_writer *w, const char *key, int32_t v);
ggx_status ggx_writer_set_u64(ggx_writer *w, const char *key, uint64_t v);
ggx_status ggx_writer_set_i64(ggx_writer *w, const char *key, int64_t v);
ggx_status ggx_writer_set_f32(ggx_writer *w, const char *key, float v);
ggx_status ggx_writer_set_f64(ggx_writer *w, const char *key, double v);
ggx_status ggx_writer_set_bool(ggx_writer *w, const char *key, bool v);
ggx_status ggx_writer_set_str(ggx_writer *w, const char *key, const char *v);
ggx_status ggx_writer_set_blob(ggx_writer *w, const char *key, const void *data, uint64_t len);
ggx_status ggx_writer_set_arr_i32(ggx_writer *w, const char *key, const int32_t *v, uint64_t n);
ggx_status ggx_writer_set_arr_f32(ggx_writer *w, const char *key, const float *v, uint64_t n);
ggx_status ggx_writer_set_arr_str(ggx_writer *w, const char *key, const char *const *v, uint64_t n);
/* Declare tensors (after all metadata, before any data), in the order their data will come. */
ggx_status ggx_writer_add_tensor(ggx_writer *w, const char *name, enum ggx_type type,
                                 int n_dims, const int64_t *dims);
/* Stream data of the declared tensors in order; a call may span tensor boundaries. */
ggx_status ggx_writer_write(ggx_writer *w, const void *data, size_t n);
/* Checks every declared byte was written, fixes up CRCs, fsyncs, renames onto `path`. Frees w in
 * every case (on failure it first removes the temporary file): never call abort after it. */
ggx_status ggx_writer_finish(ggx_writer *w);
/* Removes the temporary file; frees w. Safe after any failure. */
void ggx_writer_abort(ggx_writer *w);
/* The temporary file's path (e.g. for a signal handler to unlink on Ctrl-C). */
const char *ggx_writer_temp_path(const ggx_writer *w);

#endif
