// src/cuda/absent.cc: the CUDA backend's entry points when the build has no CUDA. Every call
// with device tensors is rejected before it gets here; these keep the link whole.
#include "common/check.h"
#include "cuda/backend.h"

namespace proxyattn::cuda {

bool available() { return false; }
void plan(const Problem&, const Config&, Plan&, Workspace, const Runtime&) {
  PROXYATTN_FAIL("q.device = cuda, but this build of proxyattn has no CUDA backend");
}
void attend(const Problem&, const Plan&, const Runtime&) {
  PROXYATTN_FAIL("q.device = cuda, but this build of proxyattn has no CUDA backend");
}
void dense(const Problem&, const Runtime&) {
  PROXYATTN_FAIL("q.device = cuda, but this build of proxyattn has no CUDA backend");
}
void copy_to_host(void*, const void*, std::size_t, const Runtime&) {
  PROXYATTN_FAIL("device memory, but this build of proxyattn has no CUDA backend");
}
void copy_to_device(void*, const void*, std::size_t, const Runtime&) {
  PROXYATTN_FAIL("device memory, but this build of proxyattn has no CUDA backend");
}
void copy_device_to_device(void*, const void*, std::size_t, const Runtime&) {
  PROXYATTN_FAIL("device memory, but this build of proxyattn has no CUDA backend");
}
void* device_alloc(std::size_t) {
  PROXYATTN_FAIL("device memory, but this build of proxyattn has no CUDA backend");
}
void device_free(void*) {}
void synchronize(const Runtime&) {}
std::string device_name(int) { return "none"; }
bool is_supported(DType, std::int64_t) { return false; }

}  // namespace proxyattn::cuda
