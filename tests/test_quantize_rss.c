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
#include <fcntl.h>
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

/* peak RSS in MB of `bin a1 ... a8` (NULL-terminated), -1 if it did not exit with 0 */
static double peak_rss_mb(const char *bin, const char *a1, const char *a2, const char *a3, const char *a4,
                          const char *a5, const char *a6, const char *a7, const char *a8) {
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        execl(bin, bin, a1, a2, a3, a4, a5, a6, a7, a8, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (pid <= 0 || wait4(pid, &status, 0, &ru) != pid) return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s %s failed (status %d)\n", bin, a1, status);
        return -1;
    }
    return ru.ru_maxrss * 1024.0 / 1e6;
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

    /* the binary's own footprint first: a build with CUDA maps the CUDA libraries, whose
     * relocated pages count as RSS (~180 MB here) whatever the input */
    const double base_mb = peak_rss_mb(bin, "quantize", "--list-types", NULL, NULL, NULL, NULL, NULL, NULL);
    const double peak_mb = peak_rss_mb(bin, "quantize", in, out, "--type", "q8_0", "-t", "2", "--quiet");
    printf("quantize %.0f MB f32 -> q8_0: peak RSS %.1f MB (the binary alone: %.1f MB)\n", in_mb,
           peak_mb, base_mb);
    /* one chunk of source (8 Mi elements = 32 MiB of f32) and the chunk's output above the
     * binary's own: far below the input; holding the whole input mapped would exceed it */
    TEST_CHECK_MSG(base_mb > 0 && peak_mb - base_mb < in_mb / 2, "peak RSS %.1f MB (binary alone %.1f) for a %.0f MB input",
                   peak_mb, base_mb, in_mb);

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
