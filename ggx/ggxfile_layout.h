/*
 * ggxfile_layout.h — on-disk constants of the .ggx format shared by the reader (ggxfile.c) and
 * the writer (ggxfile_write.c). docs/format.md is the specification; keep them in step.
 *
 * File = header (128 B) | kv section | tensor table | zero padding | data section.
 * Every section offset is 8-aligned; the data section and every tensor in it are 64-aligned.
 * All integers little-endian.
 */
#ifndef GGX_GGXFILE_LAYOUT_H
#define GGX_GGXFILE_LAYOUT_H

#include <stdint.h>
#include <string.h>

#define GGX_MAGIC "GGX\0"
#define GGX_FORMAT_VERSION 1u
#define GGX_BOM 0x01020304u /* bytes 04 03 02 01 on disk: a little-endian file */
#define GGX_HEADER_SIZE 128u

/* Header field offsets (bytes from the start of the file). */
enum {
    GGX_H_MAGIC = 0,        /* u8[4] "GGX\0" */
    GGX_H_VERSION = 4,      /* u32 */
    GGX_H_BOM = 8,          /* u32 GGX_BOM */
    GGX_H_HEADER_SIZE = 12, /* u32 = 128 */
    GGX_H_FILE_SIZE = 16,   /* u64 total bytes */
    GGX_H_KV_OFF = 24,      /* u64 */
    GGX_H_KV_SIZE = 32,     /* u64 */
    GGX_H_KV_COUNT = 40,    /* u64 */
    GGX_H_TT_OFF = 48,      /* u64 tensor table */
    GGX_H_TT_SIZE = 56,     /* u64 */
    GGX_H_TT_COUNT = 64,    /* u64 */
    GGX_H_DATA_OFF = 72,    /* u64 */
    GGX_H_DATA_SIZE = 80,   /* u64 */
    GGX_H_ALIGN = 88,       /* u32 = 64 */
    GGX_H_FLAGS = 92,       /* u32 = 0 (reserved) */
    GGX_H_KV_CRC = 96,      /* u32 crc32 of the kv section */
    GGX_H_TT_CRC = 100,     /* u32 crc32 of the tensor table */
    GGX_H_RESERVED = 104,   /* 20 zero bytes */
    GGX_H_HEADER_CRC = 124, /* u32 crc32 of bytes [0, 124) */
};

/* kv entry: fixed part, then key bytes, pad to 8, value, pad to 8. */
#define GGX_KV_FIXED 16u  /* u32 key_len, u8 type, u8 elem_type, u16 zero, u64 count */
/* tensor entry: fixed part, then u64 dims[n_dims], name bytes, pad to 8. */
#define GGX_TT_FIXED 32u  /* u32 name_len, u32 type, u32 n_dims, u32 crc32, u64 offset, u64 size */

static inline uint16_t ggx_rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t ggx_rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t ggx_rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void ggx_wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void ggx_wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void ggx_wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint64_t ggx_pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* Byte size of one scalar kv element; 0 for string/array/blob. */
static inline uint32_t ggx_kv_scalar_size(uint32_t t) {
    switch (t) {
    case 0: case 1: case 10: return 1; /* u8 i8 bool */
    case 2: case 3: return 2;          /* u16 i16 */
    case 4: case 5: case 8: return 4;  /* u32 i32 f32 */
    case 6: case 7: case 9: return 8;  /* u64 i64 f64 */
    default: return 0;
    }
}

#endif
