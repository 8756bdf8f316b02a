/*
 * flashinfer_swift.h: the C ABI of swift-flashinfer (libflashinfer_swift.so).
 *
 * Plain C. Tensors are DLPack `DLTensor`s (the classic DLPack layout below, shared by PyTorch,
 * NumPy, JAX and TVM). Every function returns an int status, FLASHINFER_SWIFT_OK (0) on success;
 * on failure, flashinfer_swift_last_error() gives the message (thread-local: the last failure of
 * the calling thread). No exception or Swift error crosses the boundary.
 *
 * Devices: kDLCPU tensors run on the CPU reference backend (Float64 math; testable without a GPU).
 * kDLCUDA tensors: the GPU kernels, in the device's primary context (the one PyTorch uses),
 * enqueued on the caller's `stream` (a CUstream; NULL = the legacy default stream) and returning
 * before they run; the caller's memory is read and written in place, never copied or freed, and must
 * stay alive until that stream has run the call. Every tensor of a call on one device. The caller
 * orders its own memory across its streams (as PyTorch does); the library orders only its internal
 * buffers.
 *
 * Handles (the wrappers below): calls on one handle must not overlap (one thread at a time, as with
 * upstream's wrappers); different handles may be used from different threads at once. A handle's
 * run keeps the device view it builds for each DLTensor (keyed by the struct's address, reused only
 * while every field is unchanged), so a caller that keeps one DLTensor per tensor, as the Python
 * package does, makes run() allocate nothing on the host.
 */
#ifndef FLASHINFER_SWIFT_H
#define FLASHINFER_SWIFT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- DLPack (dlpack.h, v0.8 layout) ---- */
#ifndef DLPACK_VERSION
typedef enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3 } DLDeviceType;
typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;
typedef enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLOpaqueHandle = 3, kDLBfloat = 4, kDLComplex = 5, kDLBool = 6 } DLDataTypeCode;
typedef struct {
  uint8_t code;   /* DLDataTypeCode */
  uint8_t bits;
  uint16_t lanes;
} DLDataType;
typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;     /* in elements; NULL: compact row-major */
  uint64_t byte_offset;
} DLTensor;
#endif

/* ---- status ---- */
enum {
  FLASHINFER_SWIFT_OK = 0,
  FLASHINFER_SWIFT_ERROR_INVALID = 1,      /* a bad argument: shape, dtype, layout, option (Python: ValueError/TypeError) */
  FLASHINFER_SWIFT_ERROR_UNSUPPORTED = 2,  /* valid but not implemented for these inputs */
  FLASHINFER_SWIFT_ERROR_RUNTIME = 3       /* a CUDA or internal failure (Python: RuntimeError) */
};

/* ---- attention options (upstream's keyword arguments) ---- */
enum { FLASHINFER_SWIFT_POS_NONE = 0, FLASHINFER_SWIFT_POS_ROPE_LLAMA = 1, FLASHINFER_SWIFT_POS_ALIBI = 2 };
enum { FLASHINFER_SWIFT_LAYOUT_NHD = 0, FLASHINFER_SWIFT_LAYOUT_HND = 1 };
typedef struct {
  int32_t causal;              /* prefill only */
  int32_t pos_encoding_mode;   /* FLASHINFER_SWIFT_POS_* */
  int32_t kv_layout;           /* FLASHINFER_SWIFT_LAYOUT_* */
  int32_t window_left;         /* -1: no window */
  float sm_scale;              /* <= 0: 1/sqrt(head_dim) */
  float rope_scale;            /* <= 0: 1 */
  float rope_theta;            /* <= 0: 1e4 */
  float logits_soft_cap;       /* 0: none */
  float k_scale;               /* FP8 K's scale, folded into sm_scale; <= 0: 1 */
  float v_scale;               /* FP8 V's scale, multiplies the output; <= 0: 1 */
} flashinfer_swift_options;

/* FP8 K/V dtypes: DLPack 1.x codes (bits 8), the OCP formats PyTorch calls float8_e4m3fn and
 * float8_e5m2. Defined here for older dlpack.h headers without them. */
enum { FLASHINFER_SWIFT_DL_FLOAT8_E4M3FN = 10, FLASHINFER_SWIFT_DL_FLOAT8_E5M2 = 12 };

/* The library's version string (static storage). */
const char* flashinfer_swift_version(void);

/* The calling thread's last error message ("" if none; valid until the thread's next call). */
const char* flashinfer_swift_last_error(void);

/*
 * Single-request decode: q [Hq, D], k / v [kv_len, Hkv, D] (NHD) or [Hkv, kv_len, D] (HND), f16
 * or bf16 (k / v also FP8, FLASHINFER_SWIFT_DL_FLOAT8_*, with options->k_scale / v_scale); out
 * [Hq, D] of q's dtype (written); lse [Hq] float32 (base 2) or NULL. `stream` is a CUstream for
 * CUDA tensors (ignored for CPU tensors).
 */
int flashinfer_swift_single_decode(const DLTensor* q, const DLTensor* k, const DLTensor* v, const DLTensor* out,
                                   const DLTensor* lse, const flashinfer_swift_options* options, void* stream);

/* Single-request prefill / append: q [qo_len, Hq, D]; out like q; lse [qo_len, Hq] or NULL. */
int flashinfer_swift_single_prefill(const DLTensor* q, const DLTensor* k, const DLTensor* v, const DLTensor* out,
                                    const DLTensor* lse, const flashinfer_swift_options* options, void* stream);

/*
 * Attention-state merges (base-2 LSE): v [n, H, D] f16/bf16, s [n, H] float32.
 *   merge_state:          (v_out, s_out) = (v_a, s_a) (+) (v_b, s_b)
 *   merge_state_in_place: (v, s) = (v, s) (+) (v_other, s_other) where mask[i] != 0 (mask: n bytes or NULL)
 *   merge_states:         v [n, S, H, D], s [n, S, H] -> v_out [n, H, D], s_out [n, H]
 * CPU or CUDA tensors (CUDA: the kernels on `stream`; v_out / s_out contiguous, written by a device
 * copy of the merged result; the mask is read on the host).
 */
int flashinfer_swift_merge_state(const DLTensor* v_a, const DLTensor* s_a, const DLTensor* v_b, const DLTensor* s_b,
                                 const DLTensor* v_out, const DLTensor* s_out, void* stream);
int flashinfer_swift_merge_state_in_place(const DLTensor* v, const DLTensor* s, const DLTensor* v_other,
                                          const DLTensor* s_other, const uint8_t* mask, void* stream);
/* merge_state_in_place with the mask as a DLTensor ([n] bool or uint8): a CUDA mask (on v's device)
 * is read by the kernel where it is (no copy to the host, capturable in a CUDA graph); a CPU one is
 * read here. */
int flashinfer_swift_merge_state_in_place_mask_tensor(const DLTensor* v, const DLTensor* s, const DLTensor* v_other,
                                                      const DLTensor* s_other, const DLTensor* mask, void* stream);
int flashinfer_swift_merge_states(const DLTensor* v, const DLTensor* s, const DLTensor* v_out, const DLTensor* s_out,
                                  void* stream);

/*
 * Batch decode over a paged KV cache (upstream's BatchDecodeWithPagedKVCacheWrapper): an opaque
 * handle; plan once per step (host arrays: indptr [batch_size + 1], indices [indptr[batch_size]],
 * last_page_len [batch_size]; q / kv data types; options: kv_layout, pos encoding, window, soft cap,
 * sm_scale, rope, k_scale / v_scale), then run per layer: q [batch_size, Hq, D]; k_cache / v_cache
 * [pages, page_size, Hkv, D] (NHD) or [pages, Hkv, page_size, D] (HND), any strides with a
 * contiguous last axis (e.g. the two halves of a [pages, 2, ...] tensor); out like q; lse
 * [batch_size, Hq] float32 or NULL.
 * `device` picks the backend at plan: kDLCPU (the reference) or kDLCUDA (the GPU kernels on
 * `stream`; a plan or run on another stream moves the wrapper there without a re-plan, ordered after
 * the plan's uploads: how a run is captured on a graph-capture stream). use_tensor_cores: -1 auto,
 * 0, 1.
 * create_graph: CUDA-graph mode (upstream's use_cuda_graph): fixed buffers for at most max_batch
 * requests and max_pages pages, so a run captured in a CUDA graph replays whatever plan was made
 * last (within the capacity); q and out then have max_batch rows. The CUDA-core kernel runs.
 */
typedef struct flashinfer_swift_batch_decode flashinfer_swift_batch_decode;
int flashinfer_swift_batch_decode_create(int32_t use_tensor_cores, flashinfer_swift_batch_decode** handle);
int flashinfer_swift_batch_decode_create_graph(int32_t max_batch, int64_t max_pages, flashinfer_swift_batch_decode** handle);
void flashinfer_swift_batch_decode_destroy(flashinfer_swift_batch_decode* handle);
int flashinfer_swift_batch_decode_plan(flashinfer_swift_batch_decode* handle, const int32_t* indptr, const int32_t* indices,
                                       const int32_t* last_page_len, int32_t batch_size, int32_t num_qo_heads,
                                       int32_t num_kv_heads, int32_t head_dim, int32_t page_size, DLDataType q_data_type,
                                       DLDataType kv_data_type, const flashinfer_swift_options* options, DLDevice device,
                                       void* stream);
int flashinfer_swift_batch_decode_run(flashinfer_swift_batch_decode* handle, const DLTensor* q, const DLTensor* k_cache,
                                      const DLTensor* v_cache, const DLTensor* out, const DLTensor* lse, void* stream);

/*
 * Batch prefill / append (upstream's BatchPrefillWithPagedKVCacheWrapper and
 * BatchPrefillWithRaggedKVCacheWrapper in one handle). plan: qo_indptr [batch_size + 1]; paged
 * (page_size > 0): kv_indptr / kv_indices / kv_last_page_len as batch decode's; ragged (page_size 0):
 * kv_indptr [batch_size + 1] of key rows, kv_indices / kv_last_page_len NULL. A custom mask:
 * packed_mask (little-endian bits, request b's at byte mask_indptr[b]) and mask_indptr
 * [batch_size + 1], or both NULL; it replaces options->causal. run: q [qo_indptr[B], Hq, D]; k / v
 * the paged caches (as batch decode's) or the ragged rows [kv_indptr[B], Hkv, D] (NHD) /
 * [Hkv, kv_indptr[B], D] (HND); out like q; lse [qo_indptr[B], Hq] float32 or NULL.
 */
typedef struct flashinfer_swift_batch_prefill flashinfer_swift_batch_prefill;
int flashinfer_swift_batch_prefill_create(flashinfer_swift_batch_prefill** handle);
/*
 * create_graph: CUDA-graph mode (upstream's use_cuda_graph): fixed device buffers for at most
 * max_batch requests, max_pages pages (0 for ragged K/V) and max_qo_rows query rows, and the kernel
 * fixed by the first plan, so a run captured in a CUDA graph replays whatever plan was made last
 * (within the capacity). On the GPU, q / out / lse then have max_qo_rows rows; rows past the plan's
 * qo_indptr[B] are not written. No custom mask in this mode.
 */
int flashinfer_swift_batch_prefill_create_graph(int32_t max_batch, int64_t max_pages, int64_t max_qo_rows,
                                                flashinfer_swift_batch_prefill** handle);
void flashinfer_swift_batch_prefill_destroy(flashinfer_swift_batch_prefill* handle);
int flashinfer_swift_batch_prefill_plan(flashinfer_swift_batch_prefill* handle, const int32_t* qo_indptr,
                                        const int32_t* kv_indptr, const int32_t* kv_indices,
                                        const int32_t* kv_last_page_len, int32_t batch_size, int32_t num_qo_heads,
                                        int32_t num_kv_heads, int32_t head_dim, int32_t page_size, DLDataType q_data_type,
                                        DLDataType kv_data_type, const flashinfer_swift_options* options,
                                        const uint8_t* packed_mask, const int32_t* mask_indptr, DLDevice device, void* stream);
int flashinfer_swift_batch_prefill_run(flashinfer_swift_batch_prefill* handle, const DLTensor* q, const DLTensor* k,
                                       const DLTensor* v, const DLTensor* out, const DLTensor* lse, void* stream);

/*
 * Multi-level cascade attention (upstream's MultiLevelCascadeAttentionWrapper): num_levels levels
 * over one paged KV pool and one ragged query tensor. plan: for level l, qo_indptr[l]
 * [batch_sizes[l] + 1] (every level covers all qo_indptr[0][B_0] queries), kv_indptr[l]
 * [batch_sizes[l] + 1], kv_indices[l] [kv_indptr[l][B_l]] and kv_last_page_len[l] [batch_sizes[l]]
 * (host arrays); options->causal applies to the last level only (as upstream). run: q [total, Hq,
 * D], k_cache / v_cache as batch decode's, out like q, lse [total, Hq] float32 or NULL. Device and
 * stream as batch decode's.
 */
typedef struct flashinfer_swift_cascade flashinfer_swift_cascade;
int flashinfer_swift_cascade_create(flashinfer_swift_cascade** handle);
/*
 * create_graph: CUDA-graph mode for num_levels levels: level l holds at most max_batch[l] requests
 * and max_pages[l] pages; every level max_qo_rows query rows. The level wrappers and the merge
 * scratch are kept across plans, so a captured run replays the last plan. On the GPU, q / out / lse
 * have max_qo_rows rows; rows past the plan's query count hold unspecified values.
 */
int flashinfer_swift_cascade_create_graph(int32_t num_levels, const int32_t* max_batch, const int64_t* max_pages,
                                          int64_t max_qo_rows, flashinfer_swift_cascade** handle);
void flashinfer_swift_cascade_destroy(flashinfer_swift_cascade* handle);
int flashinfer_swift_cascade_plan(flashinfer_swift_cascade* handle, int32_t num_levels, const int32_t* const* qo_indptr,
                                  const int32_t* const* kv_indptr, const int32_t* const* kv_indices,
                                  const int32_t* const* kv_last_page_len, const int32_t* batch_sizes, int32_t num_qo_heads,
                                  int32_t num_kv_heads, int32_t head_dim, int32_t page_size, DLDataType q_data_type,
                                  DLDataType kv_data_type, const flashinfer_swift_options* options, DLDevice device,
                                  void* stream);
int flashinfer_swift_cascade_run(flashinfer_swift_cascade* handle, const DLTensor* q, const DLTensor* k_cache,
                                 const DLTensor* v_cache, const DLTensor* out, const DLTensor* lse, void* stream);

/*
 * append_paged_kv_cache: append_key / append_value [nnz, Hkv, D] into k_cache / v_cache (the paged
 * layout of batch decode's run) at (batch_indices[t], positions[t]) through the page table
 * (kv_indices, kv_indptr [batch_size + 1], kv_last_page_len [batch_size], after the append);
 * kv_layout FLASHINFER_SWIFT_LAYOUT_*; k_scale / v_scale (<= 0: 1) quantize into an FP8 cache.
 * CPU tensors: the caches are updated in the caller's memory; CUDA: in place on `stream`.
 */
int flashinfer_swift_append_paged_kv_cache(const DLTensor* append_key, const DLTensor* append_value,
                                           const int32_t* batch_indices, const int32_t* positions, int32_t nnz,
                                           const DLTensor* k_cache, const DLTensor* v_cache, const int32_t* kv_indices,
                                           const int32_t* kv_indptr, const int32_t* kv_last_page_len, int32_t batch_size,
                                           int32_t kv_layout, float k_scale, float v_scale, void* stream);
/*
 * append_paged_kv_cache with the index arrays as 1-D int32 DLTensors (upstream's form): batch_indices
 * and positions [nnz], kv_indices, kv_indptr [batch_size + 1], kv_last_page_len [batch_size].
 * CUDA caches with CUDA index tensors (on the caches' device): the kernel reads them where they
 * are — no copy to the host, no wait, capturable in a CUDA graph — and, as upstream, they are not
 * validated on the host: the kernel skips (does not write) a token whose request, position, page
 * slot or page is out of range. CPU index tensors (with a CPU or a CUDA cache): read and validated
 * on the host first, as flashinfer_swift_append_paged_kv_cache.
 */
int flashinfer_swift_append_paged_kv_cache_tensors(const DLTensor* append_key, const DLTensor* append_value,
                                                   const DLTensor* batch_indices, const DLTensor* positions,
                                                   const DLTensor* k_cache, const DLTensor* v_cache, const DLTensor* kv_indices,
                                                   const DLTensor* kv_indptr, const DLTensor* kv_last_page_len,
                                                   int32_t kv_layout, float k_scale, float v_scale, void* stream);

/*
 * Norms (upstream's flashinfer.norm): over the last axis of input [..., hidden] (f16 / bf16; the CPU
 * reference also f32); weight (LayerNorm: gamma) and LayerNorm's beta [hidden].
 *   RMS / GEMMA_RMS: out (input's shape and dtype) = input / rms(input) * weight (GEMMA: * (1 + weight));
 *   FUSED_ADD_RMS / GEMMA_FUSED_ADD_RMS: in place, residual += input, then input = rmsnorm(residual)
 *     (out and bias unused, NULL);
 *   LAYER: out = (input - mean) / sqrt(var + eps) * gamma + beta (residual unused).
 * Gated activations (flashinfer.activation): out [..., d] = act(input[..., :d]) * input[..., d:] for
 * input [..., 2d]. Both: CUDA tensors on `stream` (any row stride, a contiguous last axis), CPU
 * tensors on the CPU reference.
 */
enum {
  FLASHINFER_SWIFT_NORM_RMS = 0,
  FLASHINFER_SWIFT_NORM_GEMMA_RMS = 1,
  FLASHINFER_SWIFT_NORM_FUSED_ADD_RMS = 2,
  FLASHINFER_SWIFT_NORM_GEMMA_FUSED_ADD_RMS = 3,
  FLASHINFER_SWIFT_NORM_LAYER = 4
};
int flashinfer_swift_norm(int32_t kind, const DLTensor* input, const DLTensor* residual, const DLTensor* weight,
                          const DLTensor* bias, const DLTensor* out, double eps, void* stream);
enum { FLASHINFER_SWIFT_ACT_SILU = 0, FLASHINFER_SWIFT_ACT_GELU = 1, FLASHINFER_SWIFT_ACT_GELU_TANH = 2 };
int flashinfer_swift_activation(int32_t kind, const DLTensor* input, const DLTensor* out, void* stream);

/*
 * RoPE (flashinfer.rope): q [nnz, Hq, D], k [nnz, Hk, D]; into q_out / k_out (same shapes and
 * dtypes), or in place when both are NULL. Positions: the ragged form (indptr [batch_size + 1] over
 * the rows, offsets [batch_size]: row indptr[b] + j at offsets[b] + j) when indptr is non-NULL,
 * else pos_ids [nnz] (host arrays). Frequencies rope_theta^(-2i / rotary_dim), divided by rope_scale,
 * or Llama 3.1's scaling when llama31 != 0 (rope_scale, low / high_freq_factor, old_context_len).
 * rope_cos_sin_cache: in place, query [nnz, Hq * head_size], key [nnz, Hk * head_size], rotated by
 * cos_sin_cache [max_position, rotary_dim] float32 (cos in the first half, sin in the second) at
 * positions [nnz]; is_neox: rotate-half pairs, else interleaved.
 */
typedef struct {
  int32_t rotary_dim;        /* 0: head_dim */
  int32_t interleave;        /* 1: pairs (2i, 2i+1); 0: (i, i + rotary_dim/2) */
  double rope_scale;
  double rope_theta;
  int32_t llama31;
  double low_freq_factor;
  double high_freq_factor;
  double old_context_len;
} flashinfer_swift_rope_options;
int flashinfer_swift_rope(const DLTensor* q, const DLTensor* k, const DLTensor* q_out, const DLTensor* k_out,
                          const int32_t* indptr, const int32_t* offsets, int32_t batch_size, const int32_t* pos_ids,
                          int32_t nnz, const flashinfer_swift_rope_options* options, void* stream);
int flashinfer_swift_rope_cos_sin_cache(const int32_t* positions, int32_t nnz, const DLTensor* query, const DLTensor* key,
                                        int32_t head_size, const DLTensor* cos_sin_cache, int32_t is_neox, void* stream);
/*
 * The same with the positions as 1-D DLTensors (upstream's form): indptr / offsets int32 (ragged,
 * when indptr is non-NULL), else pos_ids / positions int32 or int64 [nnz]. CUDA index tensors (on
 * q's device) are read by the kernel where they are — no copy to the host, no wait, capturable in
 * a CUDA graph — and, as upstream, not validated on the host: a position outside the cos/sin cache
 * gives NaN rows; ragged rows outside indptr[0] ..< indptr[batch_size] are not written. CPU index
 * tensors are read and validated on the host first (int64 values must fit int32).
 */
int flashinfer_swift_rope_tensors(const DLTensor* q, const DLTensor* k, const DLTensor* q_out, const DLTensor* k_out,
                                  const DLTensor* indptr, const DLTensor* offsets, const DLTensor* pos_ids,
                                  const flashinfer_swift_rope_options* options, void* stream);
int flashinfer_swift_rope_cos_sin_cache_tensors(const DLTensor* positions, const DLTensor* query, const DLTensor* key,
                                                int32_t head_size, const DLTensor* cos_sin_cache, int32_t is_neox,
                                                void* stream);

/*
 * Sampling (flashinfer.sampling) on probs / logits [batch_size, vocab_size] (f32, f16, bf16; rows
 * with a contiguous vocabulary axis). A per-row parameter is, in this order of precedence:
 *   - tensor (non-NULL): a compact [batch_size] tensor on the call's device, int32 for top_k and
 *     float32 for top_p / min_p / temperature. CUDA: read by the kernel when it runs (no upload, no
 *     wait for the host; a captured CUDA graph reads the values it holds at each replay) and, as
 *     upstream, not validated: top_k < 1 acts as 1, top_p <= 0 or NaN keeps only the largest
 *     probabilities, temperature <= 0 gives NaN rows. CPU: read and validated by the call;
 *   - per_row (non-NULL): per_row[0 .. count) host values (count must be batch_size), uploaded on
 *     the stream for CUDA tensors;
 *   - else value, for every row.
 * flashinfer_swift_sampling: a token per row into samples [batch_size] int32 and, when non-NULL,
 * valid [batch_size] bool / uint8 (0: the row had no token to draw; its sample is 0). filter picks
 * the distribution (top_k / top_p / min_p used as the filter names them, the others may be NULL);
 * row b draws from the Philox-4x32-10 stream curand_init(seed, b, offset) as upstream.
 * flashinfer_swift_sampling_op: out (input's shape and dtype) = top-k renorm (param: top_k), top-p
 * renorm (top_p), top-k logit mask (top_k; others -inf) or softmax(input / temperature)
 * (param: temperature, NULL: 1). CUDA tensors on `stream` (asynchronous: host per-row arrays are
 * uploaded on it), CPU tensors on the CPU reference.
 */
typedef struct {
  double value;
  const double* per_row;
  int64_t count;
  const DLTensor* tensor;
} flashinfer_swift_row_param;
enum {
  FLASHINFER_SWIFT_FILTER_NONE = 0,
  FLASHINFER_SWIFT_FILTER_TOP_K = 1,
  FLASHINFER_SWIFT_FILTER_TOP_P = 2,
  FLASHINFER_SWIFT_FILTER_MIN_P = 3,
  FLASHINFER_SWIFT_FILTER_TOP_K_TOP_P = 4,
  /* probs holds logits (float32, float16 or bfloat16): one token per row from softmax(logits) by
   * Gumbel-max in one pass (upstream's sampling_from_logits); no row parameter; the Philox offset
   * increment of a generator is batch_size * vocab_size. */
  FLASHINFER_SWIFT_FILTER_FROM_LOGITS = 5
};
enum { FLASHINFER_SWIFT_ORDER_TOP_K_FIRST = 0, FLASHINFER_SWIFT_ORDER_JOINT = 1 };
int flashinfer_swift_sampling(const DLTensor* probs, int32_t filter, int32_t filter_apply_order,
                              const flashinfer_swift_row_param* top_k, const flashinfer_swift_row_param* top_p,
                              const flashinfer_swift_row_param* min_p, uint64_t seed, uint64_t offset, const DLTensor* samples,
                              const DLTensor* valid, void* stream);
/*
 * flashinfer_swift_sampling_seed_tensors: flashinfer_swift_sampling with the seed and the offset read
 * from tensors when the call runs (what a CUDA graph needs: a captured call then reads the values
 * current at each replay). seed_arr, offset_arr: 1-element int64 / uint64 tensors where probs is
 * (CUDA: on its device; CPU: host memory), e.g. the two elements of one [seed, offset] tensor.
 * advance = 0: read only (upstream's seed / offset tensors; the caller updates them). advance != 0:
 * a generator: after the sampler, offset_arr[0] += the call's increment (upstream's increment,
 * batch_size or batch_size * 32 for the rejection samplers, those at least 64, rounded up to a
 * multiple of 4), enqueued on `stream` after the sampler (CUDA) or done before returning (CPU).
 */
int flashinfer_swift_sampling_seed_tensors(const DLTensor* probs, int32_t filter, int32_t filter_apply_order,
                                           const flashinfer_swift_row_param* top_k, const flashinfer_swift_row_param* top_p,
                                           const flashinfer_swift_row_param* min_p, const DLTensor* seed_arr,
                                           const DLTensor* offset_arr, int32_t advance, const DLTensor* samples,
                                           const DLTensor* valid, void* stream);
enum {
  FLASHINFER_SWIFT_OP_TOP_K_RENORM = 0,
  FLASHINFER_SWIFT_OP_TOP_P_RENORM = 1,
  FLASHINFER_SWIFT_OP_TOP_K_MASK_LOGITS = 2,
  FLASHINFER_SWIFT_OP_SOFTMAX = 3
};
int flashinfer_swift_sampling_op(int32_t op, const DLTensor* input, const flashinfer_swift_row_param* param,
                                 const DLTensor* out, void* stream);

/*
 * Chain speculative sampling (upstream's chain_speculative_sampling): draft_probs [B, n, V] and
 * target_probs [B, n + 1, V] (float32, float16 or bfloat16), draft_token_ids [B, n] int32; the
 * Philox streams (row b: (seed, b, offset)) by value. Writes output_token_ids [B, n + 1] int32 (the
 * emitted draft tokens, then the token drawn at the first rejection, or the bonus token; -1 after)
 * and ADDS this call's counts into output_accepted_token_num [B] int32 (every draft position's
 * acceptance test, counted) and output_emitted_draft_token_num [B] int32 (the accepted prefix's
 * length), as upstream: zero them for one call's counts. Every tensor on draft_probs' device, the
 * int32 ones compact. A CUDA call runs on `stream` without waiting for it (capturable into a CUDA
 * graph); CPU tensors run on the reference.
 */
int flashinfer_swift_chain_speculative_sampling(const DLTensor* draft_probs, const DLTensor* draft_token_ids,
                                                const DLTensor* target_probs, uint64_t seed, uint64_t offset,
                                                const DLTensor* output_token_ids, const DLTensor* output_accepted_token_num,
                                                const DLTensor* output_emitted_draft_token_num, void* stream);
/* The same with the seed and offset read from 1-element int64 / uint64 tensors on the probabilities'
 * device when the call runs (a generator's state); advance != 0 then adds B * (n + 1), rounded up to
 * 4, to the offset on the stream. */
int flashinfer_swift_chain_speculative_sampling_seed_tensors(const DLTensor* draft_probs, const DLTensor* draft_token_ids,
                                                             const DLTensor* target_probs, const DLTensor* seed_arr,
                                                             const DLTensor* offset_arr, int32_t advance,
                                                             const DLTensor* output_token_ids,
                                                             const DLTensor* output_accepted_token_num,
                                                             const DLTensor* output_emitted_draft_token_num, void* stream);

#ifdef __cplusplus
}
#endif
#endif /* FLASHINFER_SWIFT_H */
