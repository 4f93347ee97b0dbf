/* test_quantize_rss.c — `ggx quantize` hands the input's pages back as it goes: quantizing a
 * 256 MiB f32 file (two 128 MiB tensors) must peak well below the input size in resident memory
 * (the input is mapped, so without the release every page read stays resident until exit).
 * The child's peak RSS comes from wait4(); the output is checked to be a valid file with the
 * quantized type. */
#include "ggxfile.h"
#include "testutil.h"

#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#define ROWS 8192
#define COLS 4096

static int write_input(const char *path) {
    ggx_writer *w = NULL;
    if (ggx_writer_open(path, &w) != GGX_OK) return -1;
    const char *names[2] = {"backbone.blocks.0.ffn.proj_up.weight", "backbone.blocks.0.ffn.proj_down.weight"};
    ggx_status s = GGX_OK;
    for (int k = 0; k < 2 && !s; k++)
        s = ggx_writer_add_tensor(w, names[k], GGX_TYPE_F32, 2, (int64_t[]){ROWS, COLS});
    float *row = malloc(sizeof(float) * COLS);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    for (int k = 0; k < 2 && !s && row; k++)
        for (int r = 0; r < ROWS && !s; r++) {
            for (int c = 0; c < COLS; c++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                row[c] = ((float)(rng >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
            }
            s = ggx_writer_write(w, row, sizeof(float) * COLS);
        }
    free(row);
    if (s || !row) {
        ggx_writer_abort(w);
        return -1;
    }
    return ggx_writer_finish(w) == GGX_OK ? 0 : -1;
}

int main(void) {
    const char *bin = getenv("GGX_BIN");
    if (!bin) {
        fprintf(stderr, "GGX_BIN not set\n");
        return TEST_SKIP;
    }
    const char *dir = test_tmpdir("quantize-rss");
    char in[4200], out[4200];
    snprintf(in, sizeof in, "%s/in.ggx", dir);
    snprintf(out, sizeof out, "%s/out.ggx", dir);
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        return 1;
    }
    TEST_CHECK_MSG(write_input(in) == 0, "writing %s: %s", in, ggx_last_error());
    const double in_mb = 2.0 * ROWS * COLS * sizeof(float) / 1e6;

    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "quantize", in, out, "--type", "q8_0", "-t", "2", "--quiet", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    TEST_CHECK(pid > 0 && wait4(pid, &status, 0, &ru) == pid);
    TEST_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ggx quantize failed (status %d)", status);
    const double peak_mb = ru.ru_maxrss * 1024.0 / 1e6;
    printf("quantize %.0f MB f32 -> q8_0: peak RSS %.1f MB\n", in_mb, peak_mb);
    /* one chunk of source (8 Mi elements = 32 MiB of f32), the chunk's output and the binary:
     * far below the input; holding the whole input mapped would exceed it */
    TEST_CHECK_MSG(peak_mb < in_mb / 2, "peak RSS %.1f MB for a %.0f MB input", peak_mb, in_mb);

    ggx_file *f = NULL;
    TEST_CHECK_MSG(ggx_file_open(out, &f) == GGX_OK, "%s", ggx_last_error());
    if (f) {
        TEST_CHECK(ggx_file_n_tensors(f) == 2);
        const ggx_tensor_info *t = ggx_file_find_tensor(f, "backbone.blocks.0.ffn.proj_up.weight");
        TEST_CHECK(t && t->type == GGX_TYPE_Q8_0);
        TEST_CHECK_MSG(ggx_file_verify(f, NULL, NULL, NULL) == GGX_OK, "%s", ggx_last_error());
        ggx_file_close(f);
    }
    unlink(in);
    unlink(out);
    rmdir(dir);
    return test_finish("test_quantize_rss");
}
