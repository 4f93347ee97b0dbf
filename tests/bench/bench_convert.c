/*
 * bench_convert.c — converter throughput and memory on a synthetic checkpoint with the real 7B's
 * shapes (E 4096, 8 heads, qk 2048, v 4096, ffn 10944, vocab 50304) but fewer blocks.
 *
 *     bench_convert [N_BLOCKS=2] [TYPE ...]        (types default: bf16 f32 q8_0 q4_0)
 *
 * Writes the checkpoint (bf16, one shard per block + index, the fixture's tokenizer) under
 * $TMPDIR, converts it to each type, and prints seconds, source MB/s and the peak resident set.
 * The peak RSS shows the writer streams: it stays far below the model size.
 * Needs GGX_TEST_DATA (for the tokenizer files), like the tests.
 */
#include "convert/convert.h"
#include "ggx/error.h"
#include "ggx/progress.h"
#include "ggx/types.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { char name[160]; int64_t d0, d1; } tdesc; /* d1 = 0: 1-D */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint16_t rnd_bf16(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    float x = ((float)(g_rng >> 40) / (float)(1 << 24) - 0.5f) * 0.05f;
    return ggx_f32_to_bf16(x);
}

static int write_shard(const char *path, const tdesc *t, int n) {
    char *h = malloc(65536);
    size_t len = (size_t)snprintf(h, 65536, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nb = (uint64_t)t[i].d0 * (uint64_t)(t[i].d1 ? t[i].d1 : 1) * 2;
        if (t[i].d1)
            len += (size_t)snprintf(h + len, 65536 - len, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64
                                    ",%" PRId64 "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                    t[i].name, t[i].d0, t[i].d1, off, off + nb);
        else
            len += (size_t)snprintf(h + len, 65536 - len, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%" PRId64
                                    "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                    t[i].name, t[i].d0, off, off + nb);
        off += nb;
    }
    len += (size_t)snprintf(h + len, 65536 - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    uint64_t hl = len;
    fwrite(&hl, 8, 1, fp);
    fwrite(h, 1, len, fp);
    free(h);
    uint16_t *buf = malloc(1 << 22);
    for (int i = 0; i < n; i++) {
        uint64_t ne = (uint64_t)t[i].d0 * (uint64_t)(t[i].d1 ? t[i].d1 : 1);
        while (ne) {
            uint64_t k = ne > (1 << 21) ? (1 << 21) : ne;
            for (uint64_t j = 0; j < k; j++) buf[j] = rnd_bf16();
            fwrite(buf, 2, k, fp);
            ne -= k;
        }
    }
    free(buf);
    return fclose(fp);
}

static int copy_aux(const char *dir, const char *file) {
    char s[4096], d[4096];
    snprintf(s, sizeof s, "%s/xlstm-tiny/%s", getenv("GGX_TEST_DATA") ? getenv("GGX_TEST_DATA") : "tests/data", file);
    snprintf(d, sizeof d, "%s/%s", dir, file);
    FILE *a = fopen(s, "rb"), *b = fopen(d, "wb");
    if (!a || !b) return -1;
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, k, b);
    fclose(a);
    return fclose(b);
}

int main(int argc, char **argv) {
    int nb = argc > 1 ? atoi(argv[1]) : 2;
    if (nb < 1 || nb > 64) nb = 2;
    const int64_t E = 4096, NH = 8, QK = 2048, VD = 4096, F = 10944, V = 50304;
    char dir[4096], p[8192];
    snprintf(dir, sizeof dir, "%s/ggx-bench-convert-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    mkdir(dir, 0755);
    if (copy_aux(dir, "tokenizer.json") || copy_aux(dir, "tokenizer_config.json")) {
        fprintf(stderr, "bench_convert: set GGX_TEST_DATA to tests/data\n");
        return 1;
    }
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *fp = fopen(p, "w");
    fprintf(fp, "{\"model_type\":\"xlstm\",\"embedding_dim\":4096,\"num_blocks\":%d,\"num_heads\":8,"
                "\"vocab_size\":50304,\"qk_dim_factor\":0.5,\"v_dim_factor\":1.0,\"ffn_proj_factor\":2.667,"
                "\"bos_token_id\":0,\"eos_token_id\":2,\"pad_token_id\":1}\n", nb);
    fclose(fp);
    double t0 = ggx_time_s();
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *ix = fopen(p, "w");
    fprintf(ix, "{\"metadata\":{},\"weight_map\":{");
    int first = 1;
    uint64_t total = 0;
    for (int s = 0; s <= nb; s++) {
        tdesc t[16];
        int n = 0;
        if (s == nb) {
            t[n++] = (tdesc){"backbone.embeddings.weight", V, E};
            t[n++] = (tdesc){"backbone.out_norm.weight", E, 0};
            t[n++] = (tdesc){"lm_head.weight", V, E};
        } else {
            const struct { const char *n; int64_t d0, d1; } b[] = {
                {"norm_mlstm.weight", E, 0}, {"mlstm_layer.q.weight", QK, E}, {"mlstm_layer.k.weight", QK, E},
                {"mlstm_layer.v.weight", VD, E}, {"mlstm_layer.ogate_preact.weight", VD, E},
                {"mlstm_layer.igate_preact.weight", NH, E}, {"mlstm_layer.igate_preact.bias", NH, 0},
                {"mlstm_layer.fgate_preact.weight", NH, E}, {"mlstm_layer.fgate_preact.bias", NH, 0},
                {"mlstm_layer.multihead_norm.weight", VD, 0}, {"mlstm_layer.out_proj.weight", E, VD},
                {"norm_ffn.weight", E, 0}, {"ffn.proj_up_gate.weight", F, E}, {"ffn.proj_up.weight", F, E},
                {"ffn.proj_down.weight", E, F}};
            for (size_t k = 0; k < sizeof b / sizeof *b; k++) {
                snprintf(t[n].name, sizeof t[n].name, "backbone.blocks.%d.%s", s, b[k].n);
                t[n].d0 = b[k].d0;
                t[n++].d1 = b[k].d1;
            }
        }
        char shard[64];
        snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", s + 1, nb + 1);
        snprintf(p, sizeof p, "%s/%s", dir, shard);
        if (write_shard(p, t, n)) return 1;
        for (int i = 0; i < n; i++) {
            fprintf(ix, "%s\"%s\":\"%s\"", first ? "" : ",", t[i].name, shard);
            first = 0;
            total += (uint64_t)t[i].d0 * (uint64_t)(t[i].d1 ? t[i].d1 : 1) * 2;
        }
    }
    fprintf(ix, "}}\n");
    fclose(ix);
    printf("synthetic checkpoint: %d blocks, %.2f GB bf16, written in %.1f s (%s)\n", nb, total / 1e9,
           ggx_time_s() - t0, dir);

    const char *defaults[] = {"bf16", "f32", "q8_0", "q4_0"};
    int nt = argc > 2 ? argc - 2 : 4;
    for (int i = 0; i < nt; i++) {
        const char *tn = argc > 2 ? argv[2 + i] : defaults[i];
        ggx_convert_params cp = ggx_convert_default_params();
        cp.out_type = ggx_type_from_name(tn);
        ggx_convert_stats st;
        snprintf(p, sizeof p, "%s/out-%s.ggx", dir, tn);
        /* drop the page cache's copy of the output of the previous run from the picture */
        ggx_status s = ggx_convert_hf(dir, p, &cp, &st);
        if (s) {
            fprintf(stderr, "convert %s: %s\n", tn, ggx_last_error());
            return 1;
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("convert -> %-5s %7.2f s  %7.1f MB/s of source  out %.2f GB  peak RSS so far %.0f MB\n", tn,
               st.seconds, st.src_bytes / st.seconds / 1e6, st.file_bytes / 1e9, ru.ru_maxrss / 1024.0);
        unlink(p);
    }
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return 1;
    return 0;
}
