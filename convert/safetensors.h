/*
 * safetensors.h — a strict reader for Hugging Face .safetensors files (one shard).
 *
 *     ggx_st_file *st;
 *     if (ggx_st_open("model-00001-of-00003.safetensors", &st)) puts(ggx_last_error());
 *     const ggx_st_tensor *t = ggx_st_find(st, "lm_head.weight");
 *     // t->data: t->nbytes bytes of little-endian t->dtype, row-major, PyTorch dim order
 *     ggx_st_close(st);
 *
 * File layout: u64 header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, ...,
 * "__metadata__": {...}}, then the data; offsets are relative to the end of the header.
 * Every value is checked: header larger than the file or than GGX_ST_MAX_HEADER, offsets out
 * of range or overlapping, sizes that disagree with shape x dtype, unknown/unsupported dtypes.
 */
#ifndef GGX_CONVERT_SAFETENSORS_H
#define GGX_CONVERT_SAFETENSORS_H

#include "ggx.h"
#include "ggx/ggxfile.h"
#include "ggx/types.h"

#include <stddef.h>
#include <stdint.h>

#define GGX_ST_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB */

typedef struct ggx_st_tensor {
    char *name;
    enum ggx_type dtype;        /* F32, F16 or BF16 */
    int n_dims;                 /* 0..GGX_MAX_DIMS */
    int64_t dims[GGX_MAX_DIMS]; /* PyTorch order; unused = 1 */
    int64_t n_elements;
    uint64_t begin;             /* relative to the data start */
    uint64_t nbytes;
    const uint8_t *data;        /* into the mapping / buffer */
} ggx_st_tensor;

typedef struct ggx_st_file {
    char *path;            /* for messages */
    const uint8_t *base;   /* whole file */
    uint64_t size;
    int mapped;
    uint64_t data_start;   /* 8 + header length */
    ggx_st_tensor *tensors;
    size_t n_tensors;
} ggx_st_file;

/* mmap a file and parse it. */
ggx_status ggx_st_open(const char *path, ggx_st_file **out);
/* Parse an in-memory image (buf must outlive the result); `what` names it in messages. */
ggx_status ggx_st_open_buffer(const void *buf, size_t len, const char *what, ggx_st_file **out);
void ggx_st_close(ggx_st_file *st);
const ggx_st_tensor *ggx_st_find(const ggx_st_file *st, const char *name);
/* Tell the kernel the bytes [p, p + n) of a mapped file are no longer needed (keeps the
 * resident set small while streaming a model bigger than RAM). No-op for buffers. */
void ggx_st_release(const ggx_st_file *st, const void *p, uint64_t n);

/* "F32" -> GGX_TYPE_F32 etc.; -1 if the name is not a supported dtype. */
int ggx_st_dtype_from_name(const char *s);
const char *ggx_st_dtype_name(enum ggx_type t);
/* "[2048, 4096]" into buf. */
const char *ggx_st_shape_str(int n_dims, const int64_t *dims, char *buf, size_t cap);

#endif
