# Generates the wgmma wrappers of core/sm90.cuh (m64nNk16, f32 accumulators, f16/bf16 operands).
out = []
for n in (64, 128):
    nacc = n // 2
    regs = ", ".join(f"%{i}" for i in range(nacc))
    cons = ",\n        ".join(", ".join(f'"+f"(d[{i+j}])' for j in range(8)) for i in range(0, nacc, 8))
    for dt, ptx in (("__half", "f16"), ("__nv_bfloat16", "bf16")):
        # SS: A and B from shared memory descriptors.
        a = nacc
        out.append(f"""template <> struct WGMMA<{dt}, {n}> {{
  // d[{nacc}] (+)= A(desc, K-major) · B(desc; TRANS_B: MN-major).
  template <int TRANS_B>
  static __device__ __forceinline__ void ss(float (&d)[{nacc}], uint64 desc_a, uint64 desc_b, int accumulate) {{
    asm volatile(
        "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{a+2}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx}.{ptx} "
        "{{{regs}}}, %{a}, %{a+1}, p, 1, 1, 0, %{a+3};\\n}}\\n"
        : {cons}
        : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TRANS_B));
  }}
  // d[{nacc}] (+)= A(registers: four {ptx}x2 per thread) · B(desc; TRANS_B: MN-major).
  template <int TRANS_B>
  static __device__ __forceinline__ void rs(float (&d)[{nacc}], const uint32 (&a)[4], uint64 desc_b, int accumulate) {{
    asm volatile(
        "{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{a+5}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx}.{ptx} "
        "{{{regs}}}, {{%{a}, %{a+1}, %{a+2}, %{a+3}}}, %{a+4}, p, 1, 1, %{a+6};\\n}}\\n"
        : {cons}
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(TRANS_B));
  }}
}};
""")
print("\n".join(out))
