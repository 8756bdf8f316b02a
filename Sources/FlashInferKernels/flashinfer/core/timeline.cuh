// Per-CTA timestamps for measurement variants (bench `--timeline`, `read-probe`): %globaltimer in
// nanoseconds (one clock for the whole GPU) and the SM a CTA ran on. A record is three u64s:
// {start, end, smid}, at index 3·cta.
#pragma once

namespace flashinfer {
namespace timeline {

__device__ __forceinline__ unsigned long long now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Writes CTA `cta`'s record: `start` (taken earlier), now, and this SM's id.
__device__ __forceinline__ void record(unsigned long long* out, long long cta, unsigned long long start) {
  const unsigned long long end = now();
  unsigned smid;
  asm("mov.u32 %0, %%smid;" : "=r"(smid));
  out[3 * cta] = start;
  out[3 * cta + 1] = end;
  out[3 * cta + 2] = smid;
}

}  // namespace timeline
}  // namespace flashinfer
