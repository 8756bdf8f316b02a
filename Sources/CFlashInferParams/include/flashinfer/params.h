// The kernels' parameter structs, declared once for the two compilers that read them:
//   - NVRTC, as CUDA C++: the kernel headers include <flashinfer/params.h> (embedded by the
//     EmbedKernels plugin under that name) and alias each struct inside namespace flashinfer
//     (`using DecodeParams = ::FIDecodeParams;`); a kernel takes one `const __grid_constant__`
//     struct;
//   - Swift, as C (the CFlashInferParams target, through the clang importer): a launcher fills
//     the imported struct by field name and passes its bytes as the kernel's parameter buffer
//     (`KernelArguments(bytesOf:)`), so every offset and the padding are the struct's own.
// Hence plain C: `typedef struct FIName {...} FIName;` (the FI prefix keeps the names apart from
// Swift's), no C++, and no system header (NVRTC has none, so no <stdint.h>: long long, int,
// unsigned int and float, 64/32/32/32 bits on the device and on every 64-bit host).
// Host clang and NVRTC could still lay a struct out differently: ParamsLayoutTests
// (Tests/FlashInferTests) compiles, with NVRTC, a static_assert(__builtin_offsetof) of every field
// of every struct against Swift's offset, and of every sizeof against Swift's size.
//
// To add a field: declare it here with a comment giving its shape or unit, set it in the Swift
// launcher that fills the struct (the imported memberwise initialiser names every field, so a
// launcher that uses it does not compile until it does), and add its key path to the struct's
// list in ParamsLayoutTests (the test fails, naming the field, until it is there).
#pragma once

// Device pointers. The kernels read a pointer field as a typed pointer (`const int*`); the host
// holds device addresses as CUdeviceptr, an unsigned 64-bit integer that is no address in its
// own memory. So a pointer field is FI_DEVICE_PTR(T): `T*` for CUDA C++, `unsigned long long`
// for everything else, and Swift sees a CUdeviceptr (UInt64) to assign a buffer's address to
// (0 for null). Declaring `const void*` for both sides instead would import as
// UnsafeRawPointer? and take `UnsafeRawPointer(bitPattern:)` per field, calling device addresses
// host pointers. Both forms are 8 bytes, 8-byte aligned, on the 64-bit targets we build for (the
// layout test checks every one).
#if defined(__CUDACC__)
#define FI_DEVICE_PTR(T) T*
#else
#define FI_DEVICE_PTR(T) unsigned long long
#endif

// ---- attention/variants.cuh ----

// Scalars every variant reads; filled on the host (Swift) per call.
typedef struct FIVariantParams {
  float sm_scale_log2;            // sm_scale · log2(e), or cap · log2(e) with a soft cap
  float soft_cap_pre_tanh_scale;  // sm_scale / cap (used only with a soft cap)
  float rope_rcp_scale;           // 1 / rope_scale
  float rope_log2_theta;          // log2(rope_theta)
  int qo_len;                     // queries of the request
  int kv_len;                     // keys of the request
  int window_left;                // inclusive window; < 0: none
  int num_qo_heads;               // for ALiBi slopes
  float v_scale;                  // the output's factor (FP8 V's scale; 1 = none), applied with 1/rowsum
  int mask_kv_len;                // custom mask: the row length (the request's whole kv_len) of its bits
  // Custom-mask variants: the request's packed mask, bit (qo·mask_kv_len + kv) at byte >> 3, bit & 7
  // (little-endian; Attention/CustomMask.swift); a set bit keeps the key. Null otherwise. The batch
  // kernel points it at the request's segment (FIBatchPrefillParams::mask_indptr).
  FI_DEVICE_PTR(const unsigned char) custom_mask;
} FIVariantParams;

// ---- attention/kv.cuh: K and V as every attention kernel reads them ----

// The K and V tensors: key j of kv head h at k[j·k_stride_n + h·k_stride_h] (contiguous and ragged
// sources: j counts rows of the tensor), or for a paged cache at
// k[page·k_stride_page + slot·k_stride_n + h·k_stride_h] (FIPageTable), element d at + d.
typedef struct FIKVTensors {
  FI_DEVICE_PTR(const void) k;
  FI_DEVICE_PTR(const void) v;
  long long k_stride_n;     // elements between consecutive keys (rows, or slots of a page)
  long long k_stride_h;     // elements between consecutive kv heads
  long long v_stride_n;
  long long v_stride_h;
} FIKVTensors;

// A paged cache's page table, shared by every request: request b's key j is in page
// page_indices[first_b + j / page_size], slot j % page_size (first_b from the kernel's own
// per-request array).
typedef struct FIPageTable {
  FI_DEVICE_PTR(const int) page_indices;  // the page ids of all requests (CSR indices)
  long long k_stride_page;   // elements between consecutive pages of K
  long long v_stride_page;   // of V
  int page_size;             // tokens per page
  unsigned int page_div_m;   // j / page_size = (umulhi(j, page_div_m) + j) >> page_div_l, 0 <= j < 2^31
  int page_div_l;
  int pad;
} FIPageTable;

// ---- attention/decode.cuh ----

// Parameters of one decode launch (filled by Backend/CUDA/CUDADecode.swift, CUDABatchDecode.swift).
typedef struct FIDecodeParams {
  FI_DEVICE_PTR(const void) q;         // [num_qo_heads, head_dim]: q[h*q_stride_head + d]
  FI_DEVICE_PTR(void) o;               // [num_qo_heads, head_dim] contiguous, q's dtype (unsplit launches)
  FI_DEVICE_PTR(float) lse;            // [num_qo_heads] base-2 LSE, or null (unsplit launches)
  FI_DEVICE_PTR(float) partial_o;      // [num_chunks, num_qo_heads, head_dim] fp32 (split launches)
  FI_DEVICE_PTR(float) partial_lse;    // [num_chunks, num_qo_heads] base 2 (split launches)
  long long q_stride_head;   // elements
  FIKVTensors kv;            // K and V (single decode: rows of the one request; batch: the paged cache)
  FIVariantParams variant;   // scale, soft-cap, RoPE; qo_len = 1, kv_len, window_left, num_qo_heads
  int num_kv_heads;
  int group_size;            // num_qo_heads / num_kv_heads
  int kv_begin;              // first key attended (window start; 0 without a window)
  int chunk_size;            // keys per chunk (blockIdx.x), a multiple of TILE_KEYS
  int split;                 // nonzero: write partial_o / partial_lse instead of o / lse
  // Batch decode over a paged cache (PAGED kernels only; BatchDecodePlan's arrays). blockIdx.x is
  // a work item: request request_indices[w], KV chunk chunk_indices[w] of chunk_size tokens;
  // request b's pages are pages.page_indices[kv_indptr[b] ..< kv_indptr[b + 1]].
  FI_DEVICE_PTR(const int) request_indices;   // [work items]
  FI_DEVICE_PTR(const int) chunk_indices;     // [work items]
  FI_DEVICE_PTR(const int) kv_indptr;         // [B + 1] into pages.page_indices
  FI_DEVICE_PTR(const int) kv_last_page_len;  // [B]
  long long q_stride_batch;         // elements between requests' queries (q is [B, Hq, D])
  FIPageTable pages;
  // CUDA-graph mode: the plan's values live in device memory, so a captured launch replays
  // correctly after a new plan (grid padded to the capacity; padded items have request -1).
  FI_DEVICE_PTR(const int) chunk_size_ptr;    // [1] tokens per chunk, or null: use chunk_size
  // TIMELINE kernels (bench --timeline): per CTA (linear id x + y·X + z·X·Y) three u64s:
  // %globaltimer at entry, %globaltimer after its output or partial is written, %smid.
  FI_DEVICE_PTR(unsigned long long) timeline;
  // Fused split-KV merge (split launches with merge_counters non-null; no decode_merge launch):
  // each CTA writes its partial, then counts itself in its (request, kv head, head group)'s
  // counter; the CTA that completes the count folds the request's partials into o / lse and
  // resets the counter to 0 (so the counters are 0 between launches, CUDA-graph replays included).
  // A request of one chunk writes o / lse directly.
  FI_DEVICE_PTR(int) merge_counters;          // [requests · num_kv_heads · head groups], zeroed once
  FI_DEVICE_PTR(const int) o_indptr;          // [B + 1] PAGED: request b's partial rows (= its work items); null: single decode, gridDim.x chunks
} FIDecodeParams;

// ---- attention/decode_merge.cuh ----

typedef struct FIDecodeMergeParams {
  FI_DEVICE_PTR(const float) partial_o;    // [num_chunks, num_qo_heads, head_dim]
  FI_DEVICE_PTR(const float) partial_lse;  // [num_chunks, num_qo_heads], base 2
  FI_DEVICE_PTR(void) o;                   // [num_qo_heads, head_dim] contiguous, output dtype
  FI_DEVICE_PTR(float) lse;                // [num_qo_heads] base 2, or null
  int num_qo_heads;
  int num_chunks;            // single decode: chunks of the one request
  FI_DEVICE_PTR(const int) o_indptr;       // batch decode: [B + 1], request blockIdx.y's partial rows; null for single
  FI_DEVICE_PTR(unsigned long long) timeline;  // or null (bench --timeline): per CTA {after the wait, at exit, smid} ns
} FIDecodeMergeParams;

// ---- attention/prefill_traits.cuh ----

// Single-request prefill/append (filled by Backend/CUDA/CUDAPrefill.swift, prefillParams).
typedef struct FIPrefillParams {
  FI_DEVICE_PTR(const void) q;  // [qo_len, num_qo_heads, head_dim], strides q_stride_n / q_stride_h
  FI_DEVICE_PTR(void) o;        // [qo_len, num_qo_heads, head_dim], strides o_stride_n / o_stride_h
  FI_DEVICE_PTR(float) lse;     // [qo_len, num_qo_heads] base-2 log-sum-exp, or null
  long long q_stride_n;     // elements between consecutive queries
  long long q_stride_h;     // elements between consecutive query heads
  long long o_stride_n;
  long long o_stride_h;
  FIKVTensors kv;           // NHD [kv_len, num_kv_heads, head_dim] or HND [num_kv_heads, kv_len, head_dim]
  FIVariantParams variant;  // scale, soft cap, RoPE, qo_len, kv_len, window, num_qo_heads
  int num_kv_heads;
  int group_size;           // num_qo_heads / num_kv_heads
} FIPrefillParams;

// Batch prefill / append (filled by Backend/CUDA/CUDABatchPrefill.swift). One CTA = one work item
// of the plan (request, q tile, kv chunk) × one kv head: grid (work items, num_kv_heads). `base`
// holds what every request shares:
//   q, o     ragged rows [qo_indptr[B], Hq, D] (request b's queries are rows qo_indptr[b]..)
//   kv       ragged: rows [kv_total, Hkv, D] / [Hkv, kv_total, D], request b's keys from row kv_starts[b];
//            paged: element 0 of the K / V cache, k_stride_n = token (slot) stride, k_stride_h = head stride
//   lse      [qo_indptr[B], Hq] or null
//   variant  scale, soft cap, RoPE, window, num_qo_heads; its qo_len / kv_len are per request (below)
typedef struct FIBatchPrefillParams {
  FIPrefillParams base;
  FI_DEVICE_PTR(const int) request_indices;  // [items] request of each work item
  FI_DEVICE_PTR(const int) qo_tile_indices;  // [items] q tile: packed rows qo_tile·CTA_Q.. of the request
  FI_DEVICE_PTR(const int) kv_tile_indices;  // [items] kv chunk: keys kv_tile·kv_chunk ..< +kv_chunk of the request
  FI_DEVICE_PTR(const int) qo_indptr;        // [B + 1] query rows of the requests
  FI_DEVICE_PTR(const int) kv_lens;          // [B] keys of each request (appended ones included)
  FI_DEVICE_PTR(const int) kv_starts;        // [B] ragged: first key row; paged: first entry in pages.page_indices
  FI_DEVICE_PTR(const int) o_indptr;         // [B] split: request b's first partial row; else null
  FI_DEVICE_PTR(void) tmp_o;                 // split: partial outputs [o_indptr[B], Hq, D], row (b, qo i, chunk c) =
                                             //   o_indptr[b] + i·chunks_b + c; null when the plan does not split
  FI_DEVICE_PTR(float) tmp_lse;              // split: partial LSE [o_indptr[B], Hq]
  FIPageTable pages;           // paged: the page table; ragged: zeros (page_size 1)
  FI_DEVICE_PTR(const int) mask_indptr;      // custom mask: [B + 1] byte offsets of the requests' packed masks
                                             //   in base.variant.custom_mask; else null
  int kv_chunk;                // keys per kv chunk (chunks_b = max(ceil(kv_len_b / kv_chunk), 1))
  int pad;
} FIBatchPrefillParams;

// ---- attention/cascade.cuh ----

typedef struct FIMergeParams {
  FI_DEVICE_PTR(const void) va;   // [n, H, D] (merge_state / in-place: other) or [n, S, H, D] (merge_states)
  FI_DEVICE_PTR(const float) sa;  // [n, H] or [n, S, H]
  FI_DEVICE_PTR(const void) vb;   // [n, H, D] (merge_state) — unused by merge_states
  FI_DEVICE_PTR(const float) sb;  // [n, H]
  FI_DEVICE_PTR(void) v_out;      // [n, H, D]  (in-place: v itself)
  FI_DEVICE_PTR(float) s_out;     // [n, H]     (in-place: s itself; may be null for merge_states without LSE)
  FI_DEVICE_PTR(const unsigned char) mask;  // [n] or null (in-place only): rows with mask 0 are left unchanged
  long long n;          // positions
  int num_heads;
  int head_dim;
  int num_states;       // merge_states only
  int pad;
} FIMergeParams;

// Variable-length merge (split-KV batch prefill; attention/cascade.cuh describes it).
typedef struct FIMergeVarlenParams {
  FI_DEVICE_PTR(const void) v;       // [rows, H, D]
  FI_DEVICE_PTR(const float) s;      // [rows, H]
  FI_DEVICE_PTR(const int) indptr;   // [n + 1]
  FI_DEVICE_PTR(void) v_out;         // [n, H, D]
  FI_DEVICE_PTR(float) s_out;        // [n, H] or null
  long long n;          // positions
  int num_heads;
  int head_dim;
} FIMergeVarlenParams;

// ---- page/append.cuh ----

typedef struct FIAppendPagedKVParams {
  FI_DEVICE_PTR(const void) append_k;     // [nnz, Hkv, D] strided (bytes below)
  FI_DEVICE_PTR(const void) append_v;     // [nnz, Hkv, D]
  FI_DEVICE_PTR(void) k_cache;            // [pages, ...] per layout, strided
  FI_DEVICE_PTR(void) v_cache;
  FI_DEVICE_PTR(const int) batch_indices; // [nnz]
  FI_DEVICE_PTR(const int) positions;     // [nnz]
  FI_DEVICE_PTR(const int) kv_indices;    // [num_indices] page ids
  FI_DEVICE_PTR(const int) kv_indptr;     // [batch_size + 1]
  long long ak_stride_n, ak_stride_h;   // strides in bytes
  long long av_stride_n, av_stride_h;
  long long kc_stride_page, kc_stride_token, kc_stride_head;  // bytes
  long long vc_stride_page, vc_stride_token, vc_stride_head;
  int nnz;
  int num_heads;
  int page_size;
  int vecs_per_head;        // head_dim * cache element bytes / 16 (16-byte vectors of the cache)
  float k_scale;            // quantizing kernel only: the cache holds fp8(append_k / k_scale); 1 for the copy
  float v_scale;            // quantizing kernel only: fp8(append_v / v_scale)
  // The bounds every token's target is checked against in the kernel (indices in device memory are
  // not validated on the host): a token whose request, position, page slot or page falls outside
  // them is not written.
  int batch_size;           // requests: batch_indices in [0, batch_size)
  int num_indices;          // entries of kv_indices: kv_indptr in [0, num_indices]
  int num_pages;            // pages of the cache: kv_indices in [0, num_pages)
  int pad;
} FIAppendPagedKVParams;

// ---- sampling/sampling.cuh: samplers, renorm, masks, softmax (one CTA per row) ----

typedef struct FISamplingParams {
  FI_DEVICE_PTR(const void) input;           // [batch, vocab] of T: probabilities (samplers, renorm) or logits
  FI_DEVICE_PTR(void) output;                // [batch, vocab] of T (renorm, mask, softmax); [batch, vocab] f32 uniforms (philox check)
  FI_DEVICE_PTR(int) samples;                // [batch] samplers: the token of each row (0 when invalid)
  FI_DEVICE_PTR(unsigned char) valid;        // [batch] samplers: 1 when the row had a token to draw
  FI_DEVICE_PTR(const int) top_k_arr;        // [batch] per-row top-k, or null: top_k for every row
  FI_DEVICE_PTR(const float) top_p_arr;      // [batch] per-row top-p, or null: top_p
  FI_DEVICE_PTR(const float) min_p_arr;      // [batch] per-row min-p, or null: min_p
  FI_DEVICE_PTR(const float) temperature_arr; // [batch] per-row softmax temperature, or null: temperature
  FI_DEVICE_PTR(const unsigned long long) seed_arr;    // [1] the seed read on the device (CUDA graphs), or null: seed
  FI_DEVICE_PTR(const unsigned long long) offset_arr;  // [1] the Philox offset on the device, or null: offset
  unsigned long long seed;                   // Philox key; row b draws from subsequence b (when seed_arr is null)
  unsigned long long offset;                 // Philox offset (in 32-bit words) of every row's first draw (when offset_arr is null)
  long long row_stride;                      // elements between rows of input and output
  int vocab_size;                            // elements per row (philox check: uniforms per row)
  int top_k;                                 // >= 1
  float top_p;                               // (0, 1]
  float min_p;                               // [0, 1]
  float temperature;                         // > 0
  int pad;
} FISamplingParams;

// ---- sampling/sampling.cuh: chain speculative sampling (one CTA per request) ----

typedef struct FIChainSpeculativeParams {
  FI_DEVICE_PTR(const void) draft_probs;     // [batch, num_draft, vocab] of T, contiguous
  FI_DEVICE_PTR(const int) draft_token_ids;  // [batch, num_draft]
  FI_DEVICE_PTR(const void) target_probs;    // [batch, num_draft + 1, vocab] of T, contiguous
  FI_DEVICE_PTR(int) output_token_ids;       // [batch, num_draft + 1]: accepted drafts, the resampled or bonus token, then -1
  FI_DEVICE_PTR(int) accepted;               // [batch] += draft tokens passing the test (every position tested)
  FI_DEVICE_PTR(int) emitted;                // [batch] += draft tokens emitted (before the first rejection)
  FI_DEVICE_PTR(const unsigned long long) seed_arr;    // [1] the seed read on the device (CUDA graphs), or null: seed
  FI_DEVICE_PTR(const unsigned long long) offset_arr;  // [1] the Philox offset on the device, or null: offset
  unsigned long long seed;                   // Philox key; request b draws from subsequence b (when seed_arr is null)
  unsigned long long offset;                 // Philox offset (in 32-bit words) (when offset_arr is null)
  int num_draft;                             // >= 1
  int vocab_size;                            // >= 1
} FIChainSpeculativeParams;

// ---- sampling/philox.cuh: a device generator's offset advanced after a sampling call ----

// One thread: *offset += increment. Launched on the sampling kernel's stream right after it (and
// captured into a graph with it), so every block of that kernel has read the old offset, and the
// next call (or graph replay) reads the advanced one.
typedef struct FIPhiloxAdvanceParams {
  FI_DEVICE_PTR(unsigned long long) offset;  // [1] the generator's Philox offset (in 32-bit words)
  unsigned long long increment;              // words the call may consume per subsequence, a multiple of 4
} FIPhiloxAdvanceParams;

// ---- ops/elementwise.cuh ----

typedef struct FIAxpbyParams {
  FI_DEVICE_PTR(const void) x;   // [n] elements of T
  FI_DEVICE_PTR(const void) y;   // [n] elements of T
  FI_DEVICE_PTR(void) out;       // [n] elements of T
  float alpha;
  float beta;
  long long n;         // number of elements
} FIAxpbyParams;

// ---- ops/norm.cuh ----

// One CTA per row (filled by Backend/CUDA/CUDAOps.swift). Rows are the input's leading axes,
// flattened; every row stride and the addresses are multiples of the kernel's vector width.
typedef struct FINormParams {
  FI_DEVICE_PTR(const void) input;  // [rows, hidden] T, row stride input_stride
  FI_DEVICE_PTR(const void) residual;  // fused add: [rows, hidden] T, row stride residual_stride; else null
  FI_DEVICE_PTR(void) residual_out;    // fused add: [rows, hidden] T ← input + residual (may be residual: in place)
  FI_DEVICE_PTR(const void) weight; // [hidden] WT (LayerNorm: gamma)
  FI_DEVICE_PTR(const void) bias;   // LayerNorm: [hidden] WT (beta); else null
  FI_DEVICE_PTR(void) out;          // [rows, hidden] T, row stride out_stride (may be input: in place)
  long long input_stride;     // elements between rows
  long long residual_stride;
  long long residual_out_stride;
  long long out_stride;
  int rows;
  int hidden;                 // elements per row, a multiple of the vector width, <= 32 · 1024
  float eps;
  float weight_bias;          // added to every weight: 1 for the Gemma variants (w stored as w − 1), else 0
} FINormParams;

// ---- ops/activation.cuh ----

typedef struct FIActivationParams {
  FI_DEVICE_PTR(const void) input;  // [rows, 2·d] T: gate input[r, :d], up input[r, d:], row stride input_stride
  FI_DEVICE_PTR(void) out;          // [rows, d] T, row stride out_stride
  long long input_stride;   // elements between rows
  long long out_stride;
  int rows;                 // rows · d / vector width < 2^31
  int d;
} FIActivationParams;

// ---- ops/rope.cuh ----

// Frequencies a RoPE launch carries by value: rotary_dim <= 512.
#define FI_ROPE_MAX_FREQS 256

typedef struct FIRopeParams {
  FI_DEVICE_PTR(const void) q;      // [nnz, num_qo_heads, head_dim] T: q[t·q_stride_n + h·q_stride_h + e]
  FI_DEVICE_PTR(const void) k;      // [nnz, num_kv_heads, head_dim] T
  FI_DEVICE_PTR(void) q_out;        // as q (q itself in place)
  FI_DEVICE_PTR(void) k_out;        // as k
  FI_DEVICE_PTR(const void) positions;       // [nnz] position of each row, int (positions_i64 0) or long long (1); null when ragged
  FI_DEVICE_PTR(const int) indptr;           // ragged rows: [batch_size + 1], request b owns rows indptr[b] ..< indptr[b+1]; or null
  FI_DEVICE_PTR(const int) offsets;          // ragged rows: [batch_size], row indptr[b] + j at position offsets[b] + j
  FI_DEVICE_PTR(const float) cos_sin_cache;  // [cache_rows, rotary_dim] f32 (cos | sin), row stride cache_stride; or null
  long long q_stride_n, q_stride_h;    // elements
  long long k_stride_n, k_stride_h;
  long long qo_stride_n, qo_stride_h;
  long long ko_stride_n, ko_stride_h;
  long long cache_stride;     // elements between positions of the cache
  int nnz;                    // rows; nnz · units · head groups < 2^31
  int num_qo_heads;
  int num_kv_heads;
  int rotary_dim;             // even, <= head_dim; <= 2 · FI_ROPE_MAX_FREQS with frequencies
  int units;                  // vectors handled per head: rot_units, then (head_dim − rotary_dim) / VEC copies (0 in place)
  int rot_units;              // rotating vectors per head: (rotary_dim / 2) / VEC rotate-half, rotary_dim / VEC interleaved
  int heads_per_thread;       // heads (q then k) each thread applies its sin/cos to
  int positions_i64;          // 1: positions are long long
  int batch_size;             // ragged rows: requests (indptr has batch_size + 1 entries)
  int cache_rows;             // positions the cos/sin cache holds: a position outside [0, cache_rows) gives NaN
  float freqs[FI_ROPE_MAX_FREQS];  // without a cache: the rotary_dim / 2 scaled frequencies (by value:
                                   // nothing to upload, so a launch can be captured in a CUDA graph)
} FIRopeParams;
