/* backend.c — backend selection by name (see backend.h). */
#include "backend.h"

#include "error.h"

#include <string.h>

bool ggx_backend_available(const char *name) {
    if (!name || !strcmp(name, "cpu")) return true;
#ifdef GGX_USE_CUDA
    if (!strcmp(name, "cuda")) return true;
#endif
    return false;
}

ggx_status ggx_backend_create(const char *name, const ggx_backend_params *p, ggx_backend **out) {
    *out = NULL;
    ggx_backend_params def = {0};
    if (!p) p = &def;
    if (!name || !strcmp(name, "cpu")) return ggx_backend_cpu_init(p, out);
    if (!strcmp(name, "cuda")) {
#ifdef GGX_USE_CUDA
        return ggx_backend_cuda_init(p, out);
#else
        return ggx_fail(GGX_ERR_UNSUPPORTED,
                        "backend 'cuda' is not built in (configure with -DGGX_CUDA=ON)");
#endif
    }
    return ggx_fail(GGX_ERR_UNSUPPORTED, "unknown backend '%s' (expected cpu or cuda)", name);
}

void ggx_backend_free(ggx_backend *be) {
    if (be && be->iface.free) be->iface.free(be);
}
