// A host-only stand-in for the CUDA driver (libcuda.so.1): every entry point the library resolves,
// succeeding without a GPU. Kernels are not run, copies and fills do nothing (a device-to-host copy
// writes zeros), device addresses are counted out of a reserved range and never dereferenced.
// What it is for: running the library's *host* path of the CUDA backend (validation, planning,
// JIT through the real NVRTC, stream ordering, launch setup, graph capture bookkeeping) on a machine
// without a GPU — counting heap allocations per run() in CI (python/tests/test_host_path.py) and
// profiling the host cost with perf. Nothing it returns is a GPU result.
//   cc -O2 -shared -fPIC -o libcuda.so.1 scripts/nullcuda.c
//   FLASHINFER_CUDA_DRIVER=$PWD/libcuda.so.1 <program using the library>
// The device it reports is shaped like an H200 (132 SMs, sm_90, 60 MB L2, 227 KB shared per block).
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef void *CUhandle;

static atomic_long launches, graph_launches, htod_copies, dtoh_copies, syncs;
// The last launch's parameter bytes (its first kernel parameter, the library's one struct), kept
// when a test asks for them with nullcuda_capture_params(size of the struct).
static size_t param_bytes;
static unsigned char last_params[4096];
static atomic_ullong next_address = 1ull << 44;  // fake device addresses, 256-byte aligned
static int context_token, module_token, function_token, graph_token, exec_token;

// Streams and events: small registries of handed-out tokens (a foreign handle, e.g. torch's
// stream, is accepted anywhere a stream is; the capture flag is kept for up to 64 streams).
#define MAX_CAPTURING 64
static CUhandle capturing[MAX_CAPTURING];
static atomic_long stream_tokens;

long nullcuda_launches(void) { return atomic_load(&launches); }
long nullcuda_htod_copies(void) { return atomic_load(&htod_copies); }
long nullcuda_dtoh_copies(void) { return atomic_load(&dtoh_copies); }
long nullcuda_syncs(void) { return atomic_load(&syncs); }  // stream, context and event synchronizations
void nullcuda_capture_params(size_t n) { param_bytes = n < sizeof last_params ? n : sizeof last_params; }
void nullcuda_last_params(void *out, size_t n) { memcpy(out, last_params, n < sizeof last_params ? n : sizeof last_params); }
static void keep_params(void **params) {
  if (param_bytes && params && params[0]) memcpy(last_params, params[0], param_bytes);
}
long nullcuda_graph_launches(void) { return atomic_load(&graph_launches); }

CUresult cuInit(unsigned flags) { (void)flags; return 0; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) { *s = r ? "CUDA_ERROR_NULL_DRIVER" : "CUDA_SUCCESS"; return 0; }
CUresult cuGetErrorString(CUresult r, const char **s) { *s = r ? "error from the host-only null driver" : "no error"; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int ordinal) { if (ordinal != 0) return 101; *d = 0; return 0; }  // 101: INVALID_DEVICE
CUresult cuDeviceGetName(char *name, int len, int dev) {
  (void)dev;
  strncpy(name, "NULL CUDA driver (host-only, H200-shaped)", (size_t)len);
  if (len > 0) name[len - 1] = 0;
  return 0;
}
CUresult cuDeviceGetAttribute(int *v, int attribute, int dev) {
  (void)dev;
  switch (attribute) {
    case 1: *v = 1024; break;       // MAX_THREADS_PER_BLOCK
    case 8: *v = 49152; break;      // MAX_SHARED_MEMORY_PER_BLOCK
    case 10: *v = 32; break;        // WARP_SIZE
    case 12: *v = 65536; break;     // MAX_REGISTERS_PER_BLOCK
    case 16: *v = 132; break;       // MULTIPROCESSOR_COUNT
    case 36: *v = 3201000; break;   // MEMORY_CLOCK_RATE (kHz)
    case 37: *v = 6144; break;      // GLOBAL_MEMORY_BUS_WIDTH
    case 38: *v = 62914560; break;  // L2_CACHE_SIZE
    case 39: *v = 2048; break;      // MAX_THREADS_PER_MULTIPROCESSOR
    case 75: *v = 9; break;         // COMPUTE_CAPABILITY_MAJOR
    case 76: *v = 0; break;         // COMPUTE_CAPABILITY_MINOR
    case 81: *v = 233472; break;    // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    case 82: *v = 65536; break;     // MAX_REGISTERS_PER_MULTIPROCESSOR
    case 97: *v = 232448; break;    // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    case 106: *v = 32; break;       // MAX_BLOCKS_PER_MULTIPROCESSOR
    default: *v = 0;
  }
  return 0;
}
CUresult cuDeviceTotalMem_v2(size_t *bytes, int dev) { (void)dev; *bytes = 150ull << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(CUhandle *ctx, int dev) { (void)dev; *ctx = &context_token; return 0; }
CUresult cuCtxSetCurrent(CUhandle ctx) { (void)ctx; return 0; }
CUresult cuCtxSynchronize(void) { atomic_fetch_add(&syncs, 1); return 0; }
CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) { *free_bytes = 140ull << 30; *total = 150ull << 30; return 0; }

CUresult cuStreamCreate(CUhandle *s, unsigned flags) {
  (void)flags;
  *s = (CUhandle)(uintptr_t)(0x5000 + 16 * atomic_fetch_add(&stream_tokens, 1));
  return 0;
}
CUresult cuStreamDestroy_v2(CUhandle s) { (void)s; return 0; }
CUresult cuStreamSynchronize(CUhandle s) { (void)s; atomic_fetch_add(&syncs, 1); return 0; }
CUresult cuStreamWaitEvent(CUhandle s, CUhandle e, unsigned flags) { (void)s; (void)e; (void)flags; return 0; }
static int capture_slot(CUhandle s) {
  for (int i = 0; i < MAX_CAPTURING; i++) if (capturing[i] == s) return i;
  return -1;
}
CUresult cuStreamIsCapturing(CUhandle s, int *status) { *status = s && capture_slot(s) >= 0 ? 1 : 0; return 0; }
CUresult cuStreamBeginCapture_v2(CUhandle s, int mode) {
  (void)mode;
  if (!s || capture_slot(s) >= 0) return 900;  // STREAM_CAPTURE_UNSUPPORTED-like: nested or legacy stream
  int free_slot = capture_slot(NULL);
  if (free_slot < 0) return 2;
  capturing[free_slot] = s;
  return 0;
}
CUresult cuStreamEndCapture(CUhandle s, CUhandle *graph) {
  int i = capture_slot(s);
  if (i < 0) return 901;
  capturing[i] = NULL;
  *graph = &graph_token;
  return 0;
}
CUresult cuGraphInstantiateWithFlags(CUhandle *exec, CUhandle graph, unsigned long long flags) {
  (void)graph; (void)flags; *exec = &exec_token; return 0;
}
CUresult cuGraphLaunch(CUhandle exec, CUhandle s) { (void)exec; (void)s; atomic_fetch_add(&graph_launches, 1); return 0; }
CUresult cuGraphExecDestroy(CUhandle exec) { (void)exec; return 0; }
CUresult cuGraphDestroy(CUhandle graph) { (void)graph; return 0; }
CUresult cuGraphDebugDotPrint(CUhandle graph, const char *path, unsigned flags) { (void)graph; (void)path; (void)flags; return 0; }

CUresult cuEventCreate(CUhandle *e, unsigned flags) {
  (void)flags;
  *e = (CUhandle)(uintptr_t)(0x9000 + 16 * atomic_fetch_add(&stream_tokens, 1));
  return 0;
}
CUresult cuEventDestroy_v2(CUhandle e) { (void)e; return 0; }
CUresult cuEventRecord(CUhandle e, CUhandle s) { (void)e; (void)s; return 0; }
CUresult cuEventSynchronize(CUhandle e) { (void)e; atomic_fetch_add(&syncs, 1); return 0; }
CUresult cuEventElapsedTime_v2(float *ms, CUhandle a, CUhandle b) { (void)a; (void)b; *ms = 0.001f; return 0; }

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) {
  *p = atomic_fetch_add(&next_address, (bytes + 255) / 256 * 256 + 256);
  return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) { (void)p; return 0; }
CUresult cuMemAllocAsync(CUdeviceptr *p, size_t bytes, CUhandle s) { (void)s; return cuMemAlloc_v2(p, bytes); }
CUresult cuMemFreeAsync(CUdeviceptr p, CUhandle s) { (void)p; (void)s; return 0; }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, CUhandle s) { (void)p; (void)v; (void)n; (void)s; return 0; }
CUresult cuMemsetD16Async(CUdeviceptr p, unsigned short v, size_t n, CUhandle s) { (void)p; (void)v; (void)n; (void)s; return 0; }
CUresult cuMemsetD32Async(CUdeviceptr p, unsigned v, size_t n, CUhandle s) { (void)p; (void)v; (void)n; (void)s; return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *h, size_t n, CUhandle s) { (void)d; (void)h; (void)n; (void)s; atomic_fetch_add(&htod_copies, 1); return 0; }
CUresult cuMemcpyDtoHAsync_v2(void *h, CUdeviceptr d, size_t n, CUhandle s) { (void)d; (void)s; memset(h, 0, n); atomic_fetch_add(&dtoh_copies, 1); return 0; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr src, size_t n, CUhandle s) { (void)d; (void)src; (void)n; (void)s; return 0; }

CUresult cuModuleLoadData(CUhandle *m, const void *image) { (void)image; *m = &module_token; return 0; }
CUresult cuModuleUnload(CUhandle m) { (void)m; return 0; }
CUresult cuModuleGetFunction(CUhandle *f, CUhandle m, const char *name) { (void)m; (void)name; *f = &function_token; return 0; }
CUresult cuFuncGetAttribute(int *v, int attribute, CUhandle f) {
  (void)f;
  switch (attribute) {
    case 0: *v = 1024; break;  // MAX_THREADS_PER_BLOCK
    case 4: *v = 64; break;    // NUM_REGS
    case 5: case 6: *v = 90; break;  // PTX_VERSION, BINARY_VERSION
    default: *v = 0;           // static shared / const / local bytes, ...
  }
  return 0;
}
CUresult cuFuncSetAttribute(CUhandle f, int attribute, int value) { (void)f; (void)attribute; (void)value; return 0; }
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, CUhandle f, int block, size_t smem) {
  (void)f; (void)smem; *n = block > 0 ? 2048 / block : 1; if (*n > 32) *n = 32; if (*n < 1) *n = 1; return 0;
}
CUresult cuLaunchKernel(CUhandle f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned smem,
                        CUhandle s, void **params, void **extra) {
  (void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)smem; (void)s; (void)extra;
  keep_params(params);
  atomic_fetch_add(&launches, 1);
  return 0;
}
CUresult cuLaunchKernelEx(const void *config, CUhandle f, void **params, void **extra) {
  (void)config; (void)f; (void)extra;
  keep_params(params);
  atomic_fetch_add(&launches, 1);
  return 0;
}
CUresult cuTensorMapEncodeTiled(void *map, unsigned dtype, unsigned rank, void *base, const uint64_t *dims, const uint64_t *strides,
                                const unsigned *box, const unsigned *elem_strides, unsigned interleave, unsigned swizzle,
                                unsigned l2, unsigned oob) {
  (void)dtype; (void)rank; (void)base; (void)dims; (void)strides; (void)box; (void)elem_strides; (void)interleave;
  (void)swizzle; (void)l2; (void)oob;
  memset(map, 0, 128);
  return 0;
}
