// CPU kernels of deepseek-runtime: fp32 GEMM over panel-packed weights, and the fused
// mixture-of-experts forward built on it (AVX2 + FMA).
//
// Why: at decode batch sizes a routed expert sees 1-8 rows, and MKL's sgemm on an
// [out, in] weight spends more time packing and in its edge kernels than in arithmetic
// (a 512x512 weight at 4 rows runs at a third of the bandwidth of one row). Here a weight
// is packed once at load time into panels of 16 output columns, [ceil(out/16), in, 16], so
// a GEMM streams each panel exactly once, contiguously, while up to 6 rows of x accumulate
// in 12 ymm registers (6 rows x 2 x 8 lanes). The MoE op does the whole routed-expert
// forward (grouping by expert, gather, gate/up GEMM, SiLU * up, down GEMM, weighted sum in
// choice order) in one call, so a layer costs one dispatch instead of ~6 per expert.
//
// Accumulation is plain fp32 FMA in ascending k, the same for a row whatever else is in
// the batch (a row's result does not depend on M), which keeps batch invariance.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kPanel = 16;  // output columns per packed panel (two ymm registers)
constexpr int64_t kRows = 6;    // rows of x per register tile
#ifndef DSR_PREFETCH
#define DSR_PREFETCH 4
#endif
constexpr int64_t kPrefetch = DSR_PREFETCH;  // panel rows (cache lines) to prefetch ahead

#ifndef DSR_KC
#define DSR_KC 256
#endif
#ifndef DSR_MC
#define DSR_MC 240
#endif
// Cache blocking: a panel's slice of kKc input features (16 KiB) stays in L1 while every
// row block of the kMc-row slice of x (kMc x kKc floats, in L2) passes over it.
constexpr int64_t kKc = DSR_KC;
constexpr int64_t kMc = DSR_MC;

// y[r, n0:n0+16] (+)= x[r, k0:k0+K] . panel[k0:k0+K] for R rows; `cols` < 16 only for
// the last panel. `first`: start from zero (else continue the sums already in y);
// `last`: add the bias. Continuing through y keeps one FMA chain per output in ascending
// k, so the result is the same as without blocking.
// `ahead`: the slice the next call will read (the next panel's), prefetched into L2 while
// this one computes, so the stream from memory overlaps the arithmetic (or nullptr).
template <int R, bool Ahead>
inline void tile(const float* x, int64_t ldx, const float* panel, int64_t K, float* y,
                 int64_t ldy, int64_t cols, const float* bias, bool first, bool last,
                 const float* ahead) {
  __m256 acc0[R], acc1[R];
  alignas(32) float buf[kPanel];
  _Pragma("GCC unroll 6") for (int r = 0; r < R; ++r) {
    if (first) {
      acc0[r] = _mm256_setzero_ps();
      acc1[r] = _mm256_setzero_ps();
    } else if (cols == kPanel) {
      acc0[r] = _mm256_loadu_ps(y + r * ldy);
      acc1[r] = _mm256_loadu_ps(y + r * ldy + 8);
    } else {
      for (int64_t c = 0; c < kPanel; ++c) buf[c] = c < cols ? y[r * ldy + c] : 0.0f;
      acc0[r] = _mm256_load_ps(buf);
      acc1[r] = _mm256_load_ps(buf + 8);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(panel + (k + kPrefetch) * kPanel), _MM_HINT_T0);
    if constexpr (Ahead) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + k * kPanel), _MM_HINT_T1);
    }
    const __m256 w0 = _mm256_loadu_ps(panel + k * kPanel);
    const __m256 w1 = _mm256_loadu_ps(panel + k * kPanel + 8);
    _Pragma("GCC unroll 6") for (int r = 0; r < R; ++r) {
      const __m256 b = _mm256_broadcast_ss(x + r * ldx + k);
      acc0[r] = _mm256_fmadd_ps(b, w0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(b, w1, acc1[r]);
    }
  }
  const bool add_bias = last && bias != nullptr;
  if (cols == kPanel) {
    const __m256 b0 = add_bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 b1 = add_bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
    _Pragma("GCC unroll 6") for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(y + r * ldy, add_bias ? _mm256_add_ps(acc0[r], b0) : acc0[r]);
      _mm256_storeu_ps(y + r * ldy + 8, add_bias ? _mm256_add_ps(acc1[r], b1) : acc1[r]);
    }
    return;
  }
  _Pragma("GCC unroll 6") for (int r = 0; r < R; ++r) {
    _mm256_store_ps(buf, acc0[r]);
    _mm256_store_ps(buf + 8, acc1[r]);
    for (int64_t c = 0; c < cols; ++c) {
      y[r * ldy + c] = buf[c] + (add_bias ? bias[c] : 0.0f);
    }
  }
}

template <bool Ahead>
inline void tile_rows_as(int64_t rows, const float* x, int64_t ldx, const float* panel,
                         int64_t K, float* y, int64_t ldy, int64_t cols, const float* bias,
                         bool first, bool last, const float* ahead) {
  switch (rows) {
#define DSR_TILE(R)                                                                  \
  case R:                                                                            \
    tile<R, Ahead>(x, ldx, panel, K, y, ldy, cols, bias, first, last, ahead);        \
    break;
    DSR_TILE(1) DSR_TILE(2) DSR_TILE(3) DSR_TILE(4) DSR_TILE(5)
#undef DSR_TILE
    default: tile<6, Ahead>(x, ldx, panel, K, y, ldy, cols, bias, first, last, ahead);
  }
}

inline void tile_rows(int64_t rows, const float* x, int64_t ldx, const float* panel,
                      int64_t K, float* y, int64_t ldy, int64_t cols, const float* bias,
                      bool first, bool last, const float* ahead) {
  if (ahead != nullptr) {
    tile_rows_as<true>(rows, x, ldx, panel, K, y, ldy, cols, bias, first, last, ahead);
  } else {
    tile_rows_as<false>(rows, x, ldx, panel, K, y, ldy, cols, bias, first, last, ahead);
  }
}

// y[M, N] = x[M, K] @ W^T (+ bias) over panels [p_begin, p_end) of the packed weight.
void gemm_panels(const float* x, int64_t M, int64_t K, int64_t ldx, const float* packed,
                 int64_t N, float* y, int64_t ldy, const float* bias, int64_t p_begin,
                 int64_t p_end) {
  for (int64_t m0 = 0; m0 < M; m0 += kMc) {
    const int64_t m1 = std::min(M, m0 + kMc);
    for (int64_t p = p_begin; p < p_end; ++p) {
      const float* panel = packed + p * K * kPanel;
      const int64_t n0 = p * kPanel;
      const int64_t cols = std::min(kPanel, N - n0);
      const float* pb = bias != nullptr ? bias + n0 : nullptr;
      for (int64_t k0 = 0; k0 < K; k0 += kKc) {
        const int64_t kc = std::min(kKc, K - k0);
        const float* next = p + 1 < p_end ? panel + K * kPanel + k0 * kPanel : nullptr;
        for (int64_t r0 = m0; r0 < m1; r0 += kRows) {
          tile_rows(std::min(kRows, m1 - r0), x + r0 * ldx + k0, ldx, panel + k0 * kPanel, kc,
                    y + r0 * ldy + n0, ldy, cols, pb, k0 == 0, k0 + kc == K,
                    r0 == m0 ? next : nullptr);
        }
      }
    }
  }
}

void check_packed(const at::Tensor& packed, int64_t out_features, int64_t in_features) {
  TORCH_CHECK(packed.scalar_type() == at::kFloat && packed.is_contiguous(),
              "packed weight must be contiguous float32");
  TORCH_CHECK(packed.dim() == 3 && packed.size(2) == kPanel &&
                  packed.size(0) == (out_features + kPanel - 1) / kPanel &&
                  packed.size(1) == in_features,
              "packed weight has the wrong shape for [", out_features, ", ", in_features, "]");
}

at::Tensor linear_packed(const at::Tensor& x, const at::Tensor& packed, int64_t out_features,
                         const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "x must be CPU float32");
  TORCH_CHECK(x.dim() == 2 && x.stride(1) == 1, "x must be [M, K] with unit inner stride");
  const int64_t M = x.size(0), K = x.size(1);
  check_packed(packed, out_features, K);
  const float* bias_ptr = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() &&
                    bias->numel() == out_features,
                "bias must be contiguous float32 [out]");
    bias_ptr = bias->data_ptr<float>();
  }
  at::Tensor y = at::empty({M, out_features}, x.options());
  if (M == 0) return y;
  const float* xp = x.data_ptr<float>();
  const float* wp = packed.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t panels = packed.size(0);
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    gemm_panels(xp, M, K, x.stride(0), wp, out_features, yp, out_features, bias_ptr, begin,
                end);
  });
  return y;
}

inline float silu(float g) { return g / (1.0f + std::exp(-g)); }

inline float hsum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// scores[h] = q[h] . c for NH query rows of one head group against one latent c.
template <int NH>
inline void score_token(const float* q, int64_t D, const float* c, float* scores) {
  __m256 acc[NH];
  _Pragma("GCC unroll 8") for (int h = 0; h < NH; ++h) acc[h] = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    const __m256 cv = _mm256_loadu_ps(c + d);
    _Pragma("GCC unroll 8") for (int h = 0; h < NH; ++h) {
      acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * D + d), cv, acc[h]);
    }
  }
  _Pragma("GCC unroll 8") for (int h = 0; h < NH; ++h) {
    float tail = 0.0f;
    for (int64_t e = d; e < D; ++e) tail += q[h * D + e] * c[e];
    scores[h] = hsum(acc[h]) + tail;
  }
}

inline void score_token_heads(int64_t nh, const float* q, int64_t D, const float* c,
                              float* scores) {
  switch (nh) {
    case 1: score_token<1>(q, D, c, scores); break;
    case 2: score_token<2>(q, D, c, scores); break;
    case 3: score_token<3>(q, D, c, scores); break;
    case 4: score_token<4>(q, D, c, scores); break;
    case 5: score_token<5>(q, D, c, scores); break;
    case 6: score_token<6>(q, D, c, scores); break;
    case 7: score_token<7>(q, D, c, scores); break;
    default: score_token<8>(q, D, c, scores); break;
  }
}

// out[r, 0:16] = sum_t probs[r, t] * row_t[0:16] for R (<= 6) rows, where row_t is slot
// t's cache row (width D) from `cache` on (already offset to the wanted 16 columns): one
// sequence's latents or values, read in place from its blocks.
template <int R>
inline void weighted_rows(const float* probs, int64_t ld_probs, const float* cache,
                          int64_t D, const int64_t* table, int64_t block_size, int64_t ctx,
                          float* out, int64_t ld_out) {
  __m256 acc0[R], acc1[R];
  _Pragma("GCC unroll 6") for (int r = 0; r < R; ++r) {
    acc0[r] = _mm256_setzero_ps();
    acc1[r] = _mm256_setzero_ps();
  }
  for (int64_t t0 = 0; t0 < ctx; t0 += block_size) {
    const float* block = cache + table[t0 / block_size] * block_size * D;
    const int64_t n = std::min(block_size, ctx - t0);
    for (int64_t i = 0; i < n; ++i) {
      const float* c = block + i * D;
      const __m256 c0 = _mm256_loadu_ps(c), c1 = _mm256_loadu_ps(c + 8);
      _Pragma("GCC unroll 6") for (int r = 0; r < R; ++r) {
        const __m256 p = _mm256_broadcast_ss(probs + r * ld_probs + t0 + i);
        acc0[r] = _mm256_fmadd_ps(p, c0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(p, c1, acc1[r]);
      }
    }
  }
  alignas(32) float buf[kPanel];
  _Pragma("GCC unroll 6") for (int r = 0; r < R; ++r) {
    _mm256_store_ps(buf, acc0[r]);
    _mm256_store_ps(buf + 8, acc1[r]);
    std::memcpy(out + r * ld_out, buf, sizeof(float) * kPanel);
  }
}

inline void weighted_rows_n(int64_t rows, const float* probs, int64_t ld_probs,
                            const float* cache, int64_t D, const int64_t* table,
                            int64_t block_size, int64_t ctx, float* out, int64_t ld_out) {
  switch (rows) {
#define DSR_ROWS(R)                                                                     \
  case R:                                                                               \
    weighted_rows<R>(probs, ld_probs, cache, D, table, block_size, ctx, out, ld_out);   \
    break;
    DSR_ROWS(1) DSR_ROWS(2) DSR_ROWS(3) DSR_ROWS(4) DSR_ROWS(5)
#undef DSR_ROWS
    default:
      weighted_rows<6>(probs, ld_probs, cache, D, table, block_size, ctx, out, ld_out);
  }
}

// e^x for 8 lanes: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two for an exact
// n ln2), e^r by its Taylor series to r^7 (truncation < 1e-8 relative, below fp32's
// epsilon), times 2^n built in the exponent bits. Inputs below -87.3 give ~1e-38 instead of
// 0, which a softmax row with its maximum at 0 cannot tell apart.
inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)),
                    _mm256_set1_ps(-87.3365447504019f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// o[i] = silu(g[i]) * u[i] for i < n (vectorised exp; the scalar tail uses std::exp).
inline void silu_mul_row(const float* g, const float* u, float* o, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)),
                                          _mm256_loadu_ps(u + i)));
  }
  for (; i < n; ++i) o[i] = silu(g[i]) * u[i];
}


// The routed experts of one MoE layer. x [T, H]; topk_ids / topk_weights [T, k];
// gate_up [E, ceil(2I/16), H, 16]; down [E, ceil(H/16), I, 16]. Returns [T, H]:
// out[t] = sum over j in choice order of topk_weights[t, j] * expert_{ids[t, j]}(x[t]).
at::Tensor moe_packed(const at::Tensor& x, const at::Tensor& topk_ids,
                      const at::Tensor& topk_weights, const at::Tensor& gate_up,
                      const at::Tensor& down, int64_t inter) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "x must be contiguous CPU float32");
  TORCH_CHECK(topk_ids.scalar_type() == at::kLong && topk_ids.is_contiguous(),
              "topk_ids must be contiguous int64");
  TORCH_CHECK(topk_weights.scalar_type() == at::kFloat && topk_weights.is_contiguous(),
              "topk_weights must be contiguous float32");
  const int64_t T = x.size(0), H = x.size(1), k = topk_ids.size(1);
  TORCH_CHECK(topk_ids.size(0) == T && topk_weights.sizes() == topk_ids.sizes(),
              "topk shapes do not match x");
  TORCH_CHECK(gate_up.dim() == 4 && down.dim() == 4 && gate_up.size(0) == down.size(0),
              "expert stacks must be [E, panels, in, 16]");
  const int64_t E = gate_up.size(0);
  check_packed(gate_up[0], 2 * inter, H);
  check_packed(down[0], H, inter);
  at::Tensor out = at::empty({T, H}, x.options());
  if (T == 0) return out;

  const int64_t* ids = topk_ids.data_ptr<int64_t>();
  std::vector<int64_t> start(E + 1, 0);
  for (int64_t i = 0; i < T * k; ++i) {
    TORCH_CHECK(ids[i] >= 0 && ids[i] < E, "expert id ", ids[i], " out of range [0, ", E, ")");
    ++start[ids[i] + 1];
  }
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  // pair_at[slot] = flat (token, choice) index, grouped by expert, stable in token order
  std::vector<int64_t> pair_at(T * k), slot_of(T * k);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < T * k; ++i) {
      const int64_t slot = fill[ids[i]]++;
      pair_at[slot] = i;
      slot_of[i] = slot;
    }
  }
  std::vector<float> y_sorted(static_cast<size_t>(T * k * H));
  const float* xp = x.data_ptr<float>();
  const float* gu = gate_up.data_ptr<float>();
  const float* dn = down.data_ptr<float>();
  const int64_t gu_stride = gate_up[0].numel(), dn_stride = down[0].numel();
  const int64_t two_i = 2 * inter;
  at::parallel_for(0, E, 1, [&](int64_t e_begin, int64_t e_end) {
    std::vector<float> rows, act_in, act;
    for (int64_t e = e_begin; e < e_end; ++e) {
      const int64_t m = start[e + 1] - start[e];
      if (m == 0) continue;
      rows.resize(static_cast<size_t>(m * H));
      act_in.resize(static_cast<size_t>(m * two_i));
      act.resize(static_cast<size_t>(m * inter));
      for (int64_t r = 0; r < m; ++r) {
        const int64_t token = pair_at[start[e] + r] / k;
        std::memcpy(rows.data() + r * H, xp + token * H, sizeof(float) * H);
      }
      gemm_panels(rows.data(), m, H, H, gu + e * gu_stride, two_i, act_in.data(), two_i,
                  nullptr, 0, (two_i + kPanel - 1) / kPanel);
      for (int64_t r = 0; r < m; ++r) {
        const float* g = act_in.data() + r * two_i;
        float* a = act.data() + r * inter;
        silu_mul_row(g, g + inter, a, inter);
      }
      gemm_panels(act.data(), m, inter, inter, dn + e * dn_stride, H,
                  y_sorted.data() + start[e] * H, H, nullptr, 0, (H + kPanel - 1) / kPanel);
    }
  });
  const float* w = topk_weights.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, T, 16, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      float* o = op + t * H;
      for (int64_t j = 0; j < k; ++j) {
        const float wt = w[t * k + j];
        const float* yr = y_sorted.data() + slot_of[t * k + j] * H;
        if (j == 0) {
          for (int64_t h = 0; h < H; ++h) o[h] = wt * yr[h];
        } else {
          for (int64_t h = 0; h < H; ++h) o[h] += wt * yr[h];
        }
      }
    }
  });
  return out;
}


// probs[h, t] = softmax over t of probs[h, t] (rows of length ctx), in place.
inline void softmax_rows(float* probs, int64_t rows, int64_t ctx) {
  for (int64_t h = 0; h < rows; ++h) {
    float* row = probs + h * ctx;
    const float top = *std::max_element(row, row + ctx);
    const __m256 top8 = _mm256_set1_ps(top);
    __m256 sum8 = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 8 <= ctx; t += 8) {
      const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + t), top8));
      _mm256_storeu_ps(row + t, e);
      sum8 = _mm256_add_ps(sum8, e);
    }
    float total = hsum(sum8);
    for (; t < ctx; ++t) {
      row[t] = std::exp(row[t] - top);
      total += row[t];
    }
    const __m256 inv8 = _mm256_set1_ps(1.0f / total);
    t = 0;
    for (; t + 8 <= ctx; t += 8) _mm256_storeu_ps(row + t, _mm256_mul_ps(_mm256_loadu_ps(row + t), inv8));
    for (; t < ctx; ++t) row[t] *= 1.0f / total;
  }
}

inline const float* slot_row(const float* cache, const int64_t* table, int64_t block_size,
                             int64_t t, int64_t D) {
  return cache + (table[t / block_size] * block_size + t % block_size) * D;
}

// scores[h * ctx + t] = scale * q[h] . row_t[col : col + d] for H query rows (stride d),
// over one sequence's cache rows (width D), prefetching the next row (it may start a new
// block, which the hardware prefetcher cannot guess).
#ifndef DSR_ROWS_AHEAD
#define DSR_ROWS_AHEAD 2
#endif
constexpr int64_t kRowsAhead = DSR_ROWS_AHEAD;  // cache rows prefetched ahead of the scores

inline void score_rows(const float* q, int64_t H, int64_t d, const float* cache, int64_t D,
                       int64_t col, const int64_t* table, int64_t block_size, int64_t ctx,
                       float scale, float* scores, int64_t prefetch_width) {
  float token_scores[8];
  for (int64_t t0 = 0; t0 < ctx; t0 += block_size) {
    const float* block = cache + table[t0 / block_size] * block_size * D + col;
    const int64_t n = std::min(block_size, ctx - t0);
    // the next block is anywhere in the cache: prefetch its first rows while this one runs
    const float* next_block =
        t0 + block_size < ctx ? cache + table[t0 / block_size + 1] * block_size * D + col
                              : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      const float* c = block + i * D;
      if (prefetch_width > 0) {
        const float* ahead = i + kRowsAhead < n ? c + kRowsAhead * D : (next_block ? next_block + (i + kRowsAhead - n) * D
                                                                : nullptr);
        if (ahead != nullptr) {
          for (int64_t e = 0; e < prefetch_width; e += 16) {
            _mm_prefetch(reinterpret_cast<const char*>(ahead + e), _MM_HINT_T0);
          }
        }
      }
      for (int64_t h0 = 0; h0 < H; h0 += 8) {
        const int64_t nh = std::min<int64_t>(8, H - h0);
        score_token_heads(nh, q + h0 * d, d, c, token_scores);
        for (int64_t h = 0; h < nh; ++h) scores[(h0 + h) * ctx + t0 + i] = token_scores[h] * scale;
      }
    }
  }
}

void check_paged(const at::Tensor& q, const at::Tensor& cache, const at::Tensor& block_tables,
                 const at::Tensor& seq_lens, int64_t block_size) {
  TORCH_CHECK(q.scalar_type() == at::kFloat && q.is_contiguous() && q.dim() == 3,
              "q must be contiguous float32 [B, H, d]");
  TORCH_CHECK(cache.scalar_type() == at::kFloat && cache.is_contiguous() && cache.dim() == 2,
              "cache must be contiguous float32 [slots, width]");
  TORCH_CHECK(block_tables.scalar_type() == at::kLong && block_tables.is_contiguous() &&
                  seq_lens.scalar_type() == at::kLong && seq_lens.is_contiguous(),
              "block_tables and seq_lens must be contiguous int64");
  const int64_t B = q.size(0);
  TORCH_CHECK(block_tables.dim() == 2 && block_tables.size(0) == B && seq_lens.numel() == B,
              "one block table and length per query row");
  TORCH_CHECK(block_size > 0 && cache.size(0) % block_size == 0, "bad block size");
  const int64_t W = block_tables.size(1), n_blocks = cache.size(0) / block_size;
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int64_t* tables = block_tables.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(lens[b] > 0 && lens[b] <= W * block_size, "seq_lens[", b, "] out of range");
    for (int64_t j = 0; j < (lens[b] + block_size - 1) / block_size; ++j) {
      TORCH_CHECK(tables[b * W + j] >= 0 && tables[b * W + j] < n_blocks,
                  "block id out of range in row ", b);
    }
  }
}

// One sequence's nq query rows (stride dk) against its cache rows (width D): scores over the
// key columns [key_col, key_col + dk), softmax, then the probability-weighted sum of the
// value columns [value_col, value_col + dv) into out (nq rows, stride ld_out). `probs`
// holds nq x ctx floats; `prefetch_width` floats of each row ahead are prefetched.
inline void attend_rows(const float* q, int64_t nq, int64_t dk, const float* cache, int64_t D,
                        int64_t key_col, int64_t value_col, int64_t dv, const int64_t* table,
                        int64_t block_size, int64_t ctx, float scale, float* probs, float* out,
                        int64_t ld_out, int64_t prefetch_width) {
  score_rows(q, nq, dk, cache, D, key_col, table, block_size, ctx, scale, probs, prefetch_width);
  softmax_rows(probs, nq, ctx);
  for (int64_t col0 = 0; col0 < dv; col0 += kPanel) {
    for (int64_t h0 = 0; h0 < nq; h0 += kRows) {
      weighted_rows_n(std::min(kRows, nq - h0), probs + h0 * ctx, ctx, cache + value_col + col0,
                      D, table, block_size, ctx, out + h0 * ld_out + col0, ld_out);
    }
  }
}

// Absorbed MLA decode over a paged latent cache, read in place. q [B, H, D] (already
// scaled, D = rank + rope), cache [slots, D], block_tables [B, W], seq_lens [B].
// Returns [B, H, rank]: softmax_t(q[b, h] . c_t) weighted sum of c_t[:rank].
at::Tensor mla_decode(const at::Tensor& q, const at::Tensor& cache,
                      const at::Tensor& block_tables, const at::Tensor& seq_lens,
                      int64_t block_size, int64_t rank) {
  check_paged(q, cache, block_tables, seq_lens, block_size);
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2);
  TORCH_CHECK(cache.size(1) == D && rank > 0 && rank <= D && rank % kPanel == 0,
              "cache width must match q, and rank be a multiple of 16");
  const int64_t W = block_tables.size(1);
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int64_t* tables = block_tables.data_ptr<int64_t>();
  at::Tensor out = at::empty({B, H, rank}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* cp = cache.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B, 1, [&](int64_t b_begin, int64_t b_end) {
    std::vector<float> probs;
    for (int64_t b = b_begin; b < b_end; ++b) {
      const int64_t ctx = lens[b];
      const int64_t* table = tables + b * W;
      probs.resize(static_cast<size_t>(H * ctx));
      attend_rows(qp + b * H * D, H, D, cp, D, 0, 0, rank, table, block_size, ctx, 1.0f,
                  probs.data(), op + b * H * rank, rank, D);
    }
  });
  return out;
}

// Grouped-query decode over a paged K/V cache (rows [k (kv_heads x d) | v (kv_heads x d)]),
// read in place. q [B, H, d] (H a multiple of kv_heads), block_tables [B, W], seq_lens [B].
// Returns [B, H, d]: per query head, softmax_t(scale * q . k_t) weighted sum of v_t.
at::Tensor gqa_decode(const at::Tensor& q, const at::Tensor& cache,
                      const at::Tensor& block_tables, const at::Tensor& seq_lens,
                      int64_t block_size, int64_t kv_heads, double scale) {
  check_paged(q, cache, block_tables, seq_lens, block_size);
  const int64_t B = q.size(0), H = q.size(1), d = q.size(2);
  TORCH_CHECK(kv_heads > 0 && H % kv_heads == 0, "query heads must be a multiple of kv heads");
  TORCH_CHECK(cache.size(1) == 2 * kv_heads * d && d % kPanel == 0,
              "cache rows must be 2 x kv_heads x head_dim, head_dim a multiple of 16");
  const int64_t W = block_tables.size(1), D = cache.size(1), group = H / kv_heads;
  const int64_t* lens = seq_lens.data_ptr<int64_t>();
  const int64_t* tables = block_tables.data_ptr<int64_t>();
  at::Tensor out = at::empty({B, H, d}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* cp = cache.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float s = static_cast<float>(scale);
  // one work item per row, all its KV heads: the K halves of a row (contiguous) are read
  // from memory once, by head 0's pass, which prefetches all of them
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> probs;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t ctx = lens[b];
      const int64_t* table = tables + b * W;
      probs.resize(static_cast<size_t>(group * ctx));
      for (int64_t j = 0; j < kv_heads; ++j) {
        const int64_t first = b * H + j * group;
        attend_rows(qp + first * d, group, d, cp, D, j * d, kv_heads * d + j * d, d, table,
                    block_size, ctx, s, probs.data(), op + first * d, d,
                    j == 0 ? kv_heads * d : 0);
      }
    }
  });
  return out;
}


// silu(gate) * up for gate_up [M, 2I] (gate columns first): [M, I]. silu(g) = g / (1 + e^-g),
// the formula torch uses, with the vectorised exp.
at::Tensor silu_mul(const at::Tensor& gate_up, int64_t inter) {
  TORCH_CHECK(gate_up.scalar_type() == at::kFloat && gate_up.dim() == 2 &&
                  gate_up.stride(1) == 1 && gate_up.size(1) == 2 * inter,
              "gate_up must be float32 [M, 2 * inter] with unit inner stride");
  const int64_t M = gate_up.size(0), ld = gate_up.stride(0);
  at::Tensor out = at::empty({M, inter}, gate_up.options());
  const float* src = gate_up.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, M, 16, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const float* g = src + m * ld;
      silu_mul_row(g, g + inter, dst + m * inter, inter);
    }
  });
  return out;
}

// weight * (x / sqrt(mean(x^2) + eps)) per row of x [T, H], in torch's order of roundings.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 2 && x.stride(1) == 1,
              "x must be float32 [T, H] with unit inner stride");
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.is_contiguous() &&
                  weight.numel() == x.size(1),
              "weight must be contiguous float32 [H]");
  const int64_t T = x.size(0), H = x.size(1), ld = x.stride(0);
  at::Tensor out = at::empty({T, H}, x.options());
  const float* src = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, T, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* row = src + t * ld;
      float* o = dst + t * H;
      __m256 ss = _mm256_setzero_ps();
      int64_t h = 0;
      for (; h + 8 <= H; h += 8) {
        const __m256 v = _mm256_loadu_ps(row + h);
        ss = _mm256_fmadd_ps(v, v, ss);
      }
      float total = hsum(ss);
      for (; h < H; ++h) total += row[h] * row[h];
      const float inv = 1.0f / std::sqrt(total / static_cast<float>(H) + static_cast<float>(eps));
      const __m256 inv8 = _mm256_set1_ps(inv);
      h = 0;
      for (; h + 8 <= H; h += 8) {
        const __m256 n = _mm256_mul_ps(_mm256_loadu_ps(row + h), inv8);
        _mm256_storeu_ps(o + h, _mm256_mul_ps(_mm256_loadu_ps(w + h), n));
      }
      for (; h < H; ++h) o[h] = w[h] * (row[h] * inv);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(dsr_cpu, m) {
  m.def("linear_packed(Tensor x, Tensor packed, int out_features, Tensor? bias) -> Tensor",
        &linear_packed);
  m.def(
      "moe_packed(Tensor x, Tensor topk_ids, Tensor topk_weights, Tensor gate_up, "
      "Tensor down, int inter) -> Tensor",
      &moe_packed);
  m.def(
      "mla_decode(Tensor q, Tensor cache, Tensor block_tables, Tensor seq_lens, "
      "int block_size, int rank) -> Tensor",
      &mla_decode);
  m.def(
      "gqa_decode(Tensor q, Tensor cache, Tensor block_tables, Tensor seq_lens, "
      "int block_size, int kv_heads, float scale) -> Tensor",
      &gqa_decode);
  m.def("silu_mul(Tensor gate_up, int inter) -> Tensor", &silu_mul);
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor", &rms_norm);
}
