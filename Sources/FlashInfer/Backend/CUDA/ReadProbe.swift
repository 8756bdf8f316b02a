/// A streaming-read probe: the floor for one kernel that reads N bytes once (what a decode kernel
/// of the same size could reach), with the work split statically (equal contiguous ranges per
/// CTA) or claimed dynamically (units taken with an atomic counter), and a per-CTA timeline.
/// A measurement kernel (`flashinfer bench read-probe`), never launched by the library; it is in
/// `kernelCatalog()` so that the NVRTC tests compile it (zero spills) with every other kernel.
@_spi(Bench) public struct ReadProbeSpec: KernelSpec {
    public init() {}
    public var name: String { "probe_read" }
    public var entryPoint: String { "fi_probe_read" }
    public func source() -> String {
        """
        #include <flashinfer/core/timeline.cuh>
        #include <flashinfer/core/pdl.cuh>
        // units of 2048 16-byte vectors (32 KiB): each of the 256 threads loads 8 per unit.
        // dynamic == 0: CTA b takes units [b*per, (b+1)*per). dynamic != 0: CTA b takes unit b,
        // then claims gridDim.x + (atomicAdd(counter, 1) - base) until past the end.
        extern "C" __global__ void __launch_bounds__(256) fi_probe_read(
            const uint4* __restrict__ src, int units, int dynamic, int* counter, int base,
            unsigned long long* timeline, unsigned* sink) {
          const unsigned long long t0 = flashinfer::timeline::now();
          __shared__ int s_next;
          unsigned acc = 0;
          const int per = (units + gridDim.x - 1) / gridDim.x;
          int unit = dynamic ? int(blockIdx.x) : int(blockIdx.x) * per;
          const int last = dynamic ? units : min(units, (int(blockIdx.x) + 1) * per);
          int pending = 0;
          if (dynamic && threadIdx.x == 0) pending = int(gridDim.x) + (atomicAdd(counter, 1) - base);
          while (unit < last) {
            const uint4* p = src + (long long)unit * 2048 + threadIdx.x;
            uint4 v[8];
        #pragma unroll
            for (int i = 0; i < 8; ++i) asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                : "=r"(v[i].x), "=r"(v[i].y), "=r"(v[i].z), "=r"(v[i].w) : "l"(p + i * 256));
        #pragma unroll
            for (int i = 0; i < 8; ++i) acc ^= v[i].x ^ v[i].y ^ v[i].z ^ v[i].w;
            if (dynamic) {
              if (threadIdx.x == 0) {
                s_next = pending;
                if (pending < units) pending = int(gridDim.x) + (atomicAdd(counter, 1) - base);
              }
              __syncthreads();
              unit = s_next;
              __syncthreads();
            } else {
              ++unit;
            }
          }
          if (acc == 0x9e3779b9u) sink[0] = acc;  // keeps the loads
          if (timeline != nullptr) {
            __syncthreads();
            if (threadIdx.x == 0) flashinfer::timeline::record(timeline, blockIdx.x, t0);
          }
        }
        extern "C" __global__ void fi_probe_empty() {}
        // An op's dependency structure with no work: lets the next launch in, waits for the
        // previous grid (PDL), exits. Queued back to back, its time per call is the floor of any
        // kernel launched the way the library's ops are.
        extern "C" __global__ void fi_probe_pdl_empty() {
          flashinfer::pdl::launch_dependents();
          flashinfer::pdl::wait();
        }
        """
    }
}

/// The empty kernel of the same translation unit (`bench read-probe` times a launch of nothing).
@_spi(Bench) public struct EmptyProbeSpec: KernelSpec {
    public init() {}
    public var name: String { "probe_empty" }
    public var entryPoint: String { "fi_probe_empty" }
    public func source() -> String { ReadProbeSpec().source() }
}

/// The op-shaped empty kernel of the same translation unit (PDL launch_dependents + wait, no work):
/// `bench norm|activation` time it queued as the per-call floor.
@_spi(Bench) public struct PDLEmptyProbeSpec: KernelSpec {
    public init() {}
    public var name: String { "probe_pdl_empty" }
    public var entryPoint: String { "fi_probe_pdl_empty" }
    public func source() -> String { ReadProbeSpec().source() }
}

/// A kernel that only waits: one thread spins on %globaltimer for `ns` nanoseconds. Benches
/// launch it before a timed run of back-to-back calls, so that the host has queued every call
/// (and the end event) before the GPU reaches the first one: the run then measures the GPU's rate,
/// not the host's launch rate (`flashinfer bench norm|activation|rope`, "queued").
@_spi(Bench) public struct SpinProbeSpec: KernelSpec {
    public init() {}
    public var name: String { "probe_spin" }
    public var entryPoint: String { "fi_probe_spin" }
    public func source() -> String {
        """
        #include <flashinfer/core/timeline.cuh>
        extern "C" __global__ void fi_probe_spin(unsigned long long ns) {
          const unsigned long long t0 = flashinfer::timeline::now();
          while (flashinfer::timeline::now() - t0 < ns) __nanosleep(1000);
        }
        """
    }
}
