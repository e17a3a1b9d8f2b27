// CPU kernels for decoding a token or a few: the projections (mat-vec), the whole MoE block (route +
// experts) and one-token attention over the KV cache.
//
// At batch-1 decode every weight is read once per token, so the work is a chain of mat-vecs whose speed
// is the rate at which weights stream in. torch's paths lose that rate in two places: oneDNN's bf16
// small-M matmul (~40 us a call whatever M below 64), and the per-op cost of the ~10 small ops of routing
// and expert selection. These kernels read each weight row once, with several rows (and so several
// accumulator chains) in flight, for all tokens of the call, and run the MoE block as one call. Weights
// are in the activations' dtype, fp32 or bf16, or bf16 under fp32 activations (exactly-bf16 weights kept
// at half the bytes); experts may also be FP8 e4m3 with block scales. Accumulation is fp32; results are
// rounded to the activation dtype at the points where the PyTorch path rounds them (model.py, experts.py).
//
// Built on first use by agent/backends/local/cpu_kernels.py (torch.utils.cpp_extension, -march=native).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_torch/utils.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace {

using f32x16 = float __attribute__((vector_size(64)));
using u16x16 = uint16_t __attribute__((vector_size(32)));
using u32x16 = uint32_t __attribute__((vector_size(64)));

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// bf16 is the top half of an fp32: widen to 32 bits and shift.
inline f32x16 load16(const at::BFloat16* p) {
#ifdef __AVX512F__
  __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16);
  return reinterpret_cast<f32x16>(_mm512_castsi512_ps(w));
#else
  u16x16 h;
  std::memcpy(&h, p, sizeof h);
  u32x16 w = __builtin_convertvector(h, u32x16) << 16;
  f32x16 v;
  std::memcpy(&v, &w, sizeof v);
  return v;
#endif
}

// FP8 e4m3 (fn) weights, as stored: 1 sign, 4 exponent (bias 7) and 3 mantissa bits. Decoded through
// fp16: moved into fp16's layout the bits read as the value times 2^-8, and the fp16 -> fp32 conversion
// is exact for e4m3's subnormals too (whatever the denormal flags). The 2^-8 is undone with the block scale.
struct Fp8 {
  uint8_t bits;
};
constexpr float kFp8Unbias = 256.f;

inline float to_float(Fp8 v) {
  const int exponent = (v.bits >> 3) & 15, mantissa = v.bits & 7;
  const float magnitude = exponent ? std::ldexp(1.f + mantissa / 8.f, exponent - 7) : std::ldexp(mantissa / 8.f, -6);
  return (v.bits & 0x80 ? -magnitude : magnitude) / kFp8Unbias;  // the same 2^-8 as load16
}

inline f32x16 load16(const Fp8* p) {
#ifdef __AVX512F__
  const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i half = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8),
                                       _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7F)), 7));
  return reinterpret_cast<f32x16>(_mm512_cvtph_ps(half));
#else
  f32x16 v;
  for (int i = 0; i < 16; ++i) v[i] = to_float(p[i]);
  return v;
#endif
}

inline float hsum(f32x16 v) {
#ifdef __AVX512F__
  return _mm512_reduce_add_ps(reinterpret_cast<__m512>(v));
#else
  float s = 0.f;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
#endif
}

inline float to_float(float v) { return v; }
inline float to_float(at::BFloat16 v) { return static_cast<float>(v); }

// Round an fp32 value the way a tensor of dtype T would store it.
template <typename T>
inline float round_to(float v) {
  return static_cast<float>(static_cast<T>(v));
}

// dot(a[0:n], b[0:n]) with a in T and b in fp32. Scalar tails use explicit fused multiply-adds, as the
// vector bodies do, so that bf16 and fp32 weights of equal value give equal bits (the compiler would
// contract some tails and not others).
template <typename T>
inline float dot(const T* a, const float* b, int64_t n) {
  const int64_t nv = n - n % 16;
  f32x16 acc = {};
  for (int64_t i = 0; i < nv; i += 16) acc += load16(a + i) * load16(b + i);
  float s = hsum(acc);
  for (int64_t i = nv; i < n; ++i) s = std::fma(to_float(a[i]), b[i], s);
  return s;
}

// Blocks of four rows to prefetch ahead. The hardware prefetcher stops at each 4 KB page and restarts
// slowly, which costs most on the short, randomly chosen expert matrices; a block takes ~60 cycles, so
// four blocks ahead covers a last-level-cache miss.
constexpr int64_t kPrefetchBlocks = 4;

// y[r] = w[r, :] . x for r in [begin, end); x is fp32 [k]. Four rows at a time: four independent
// accumulator chains keep the FMA units busy where one chain would wait on its own latency.
template <typename T>
void matvec_rows(const T* w, const float* x, float* y, int64_t k, int64_t begin, int64_t end) {
  const int64_t kv = k - k % 16;
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    const T* w0 = w + r * k;
    const T* w1 = w0 + k;
    const T* w2 = w1 + k;
    const T* w3 = w2 + k;
    // Each step below reads 16 elements of 4 rows, sizeof(T) cache lines' worth: fetch as many ahead.
    const bool ahead = r + 4 * (kPrefetchBlocks + 1) <= end;
    const char* next = reinterpret_cast<const char*>(w0 + kPrefetchBlocks * 4 * k);
    f32x16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t i = 0; i < kv; i += 16) {
      if (ahead) {
        for (int64_t line = 0; line < int64_t(sizeof(T)); ++line) __builtin_prefetch(next + (i / 16 * sizeof(T) + line) * 64);
      }
      const f32x16 xv = load16(x + i);
      a0 += load16(w0 + i) * xv;
      a1 += load16(w1 + i) * xv;
      a2 += load16(w2 + i) * xv;
      a3 += load16(w3 + i) * xv;
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (int64_t i = kv; i < k; ++i) {
      s0 = std::fma(to_float(w0[i]), x[i], s0);
      s1 = std::fma(to_float(w1[i]), x[i], s1);
      s2 = std::fma(to_float(w2[i]), x[i], s2);
      s3 = std::fma(to_float(w3[i]), x[i], s3);
    }
    y[r] = s0;
    y[r + 1] = s1;
    y[r + 2] = s2;
    y[r + 3] = s3;
  }
  for (; r < end; ++r) y[r] = dot(w + r * k, x, k);
}

// Split rows among threads in blocks of at least ~64 KB of weights: less is not worth a thread.
template <typename F>
void parallel_rows(int64_t rows, int64_t row_bytes, const F& fn) {
  const int64_t grain = std::max<int64_t>(4, (int64_t{1} << 16) / std::max<int64_t>(row_bytes, 1));
  at::parallel_for(0, rows, grain, fn);
}

// Working space of the calling thread, kept between calls: a decode step makes hundreds of kernel calls,
// and allocating their buffers each time cost ~20% of a step at small sizes (malloc, free and glibc's
// consolidation of freed chunks). An op takes its space once per thread, before it calls anything that
// could take more (a second take of the same type would hand out the first one's memory again).
template <typename U>
U* scratch(int64_t n) {
  thread_local std::vector<U> buffer;
  if (int64_t(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

template <typename T>
void widen(const T* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = to_float(x[i]);
}

// Rows r..r+3 of w against tokens t..t+N-1 of xs (fp32 [m, k]), into ys[token * ld + row]: 4N accumulator
// chains, each weight vector loaded once for N tokens and each activation vector once for four rows. The
// sums are formed in the same order as in matvec_rows and dot(), so any m gives the same bits.
template <int N, typename T>
inline void tile_4_rows(const T* w, const float* xs, float* ys, int64_t ld, int64_t k, int64_t r, int64_t t) {
  const int64_t kv = k - k % 16;
  const T* wr = w + r * k;
  const float* xt = xs + t * k;
  f32x16 acc[4][N] = {};
  for (int64_t i = 0; i < kv; i += 16) {
    f32x16 wv[4];
    for (int j = 0; j < 4; ++j) wv[j] = load16(wr + j * k + i);
    for (int n = 0; n < N; ++n) {
      const f32x16 xv = load16(xt + n * k + i);
      for (int j = 0; j < 4; ++j) acc[j][n] += wv[j] * xv;
    }
  }
  for (int j = 0; j < 4; ++j) {
    for (int n = 0; n < N; ++n) {
      float s = hsum(acc[j][n]);
      for (int64_t i = kv; i < k; ++i) s = std::fma(to_float(wr[j * k + i]), xt[n * k + i], s);
      ys[(t + n) * ld + r + j] = s;
    }
  }
}

// ys[t * ld + r] = w[r, :] . xs[t, :] for rows r in [begin, end) and m tokens; xs is fp32 [m, k]. One
// token takes the four-row kernel; more tokens take four weight rows at a time (from memory) and reuse
// them from L1 for every group of up to four tokens, so the weights are read once however many tokens
// there are.
template <typename T>
void matmul_rows(const T* w, const float* xs, int64_t m, float* ys, int64_t ld, int64_t k, int64_t begin,
                 int64_t end) {
  if (m == 1) return matvec_rows(w, xs, ys, k, begin, end);
  const int64_t block_bytes = 4 * k * int64_t(sizeof(T));
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    if (r + 4 * (kPrefetchBlocks + 1) <= end) {  // the same distance ahead as matvec_rows
      const char* next = reinterpret_cast<const char*>(w + (r + 4 * kPrefetchBlocks) * k);
      for (int64_t line = 0; line < block_bytes; line += 64) __builtin_prefetch(next + line);
    }
    int64_t t = 0;
    for (; t + 4 <= m; t += 4) tile_4_rows<4>(w, xs, ys, ld, k, r, t);
    switch (m - t) {
      case 3: tile_4_rows<3>(w, xs, ys, ld, k, r, t); break;
      case 2: tile_4_rows<2>(w, xs, ys, ld, k, r, t); break;
      case 1: tile_4_rows<1>(w, xs, ys, ld, k, r, t); break;
      default: break;
    }
  }
  for (; r < end; ++r) {
    for (int64_t t = 0; t < m; ++t) ys[t * ld + r] = dot(w + r * k, xs + t * k, k);
  }
}

// matmul_rows for FP8 weights with a scale per row and 128-column block (scale [rows, blocks]): each
// block's partial sums are scaled as they finish, one accumulator vector per token.
void matmul_rows_fp8(const Fp8* w, const float* scale, int64_t blocks, const float* xs, int64_t m, float* ys,
                     int64_t ld, int64_t k, int64_t begin, int64_t end) {
  constexpr int64_t kBlock = 128;
  int64_t r = begin;
  if (m == 1 && k % 16 == 0) {  // one token: four rows at a time, as in matvec_rows
    for (; r + 4 <= end; r += 4) {
      const Fp8* w0 = w + r * k;
      f32x16 acc[4] = {};
      for (int64_t c = 0; c < k; c += kBlock) {
        const int64_t stop = std::min(k, c + kBlock);
        f32x16 part[4] = {};
        for (int64_t i = c; i < stop; i += 16) {
          const f32x16 xv = load16(xs + i);
          for (int64_t j = 0; j < 4; ++j) part[j] += load16(w0 + j * k + i) * xv;
        }
        for (int64_t j = 0; j < 4; ++j) acc[j] += part[j] * (scale[(r + j) * blocks + c / kBlock] * kFp8Unbias);
      }
      for (int64_t j = 0; j < 4; ++j) ys[r + j] = hsum(acc[j]);
    }
  }
  for (; r < end; ++r) {
    const Fp8* wr = w + r * k;
    const float* sr = scale + r * blocks;
    for (int64_t t0 = 0; t0 < m; t0 += 4) {
      const int64_t tn = std::min<int64_t>(4, m - t0);
      f32x16 acc[4] = {};
      float tail[4] = {};
      for (int64_t c = 0; c < k; c += kBlock) {
        const int64_t stop = std::min(k, c + kBlock), vec_stop = c + (stop - c) / 16 * 16;
        const float s = sr[c / kBlock] * kFp8Unbias;
        f32x16 part[4] = {};
        for (int64_t i = c; i < vec_stop; i += 16) {
          const f32x16 wv = load16(wr + i);
          for (int64_t j = 0; j < tn; ++j) part[j] += wv * load16(xs + (t0 + j) * k + i);
        }
        for (int64_t j = 0; j < tn; ++j) {
          acc[j] += part[j] * s;
          for (int64_t i = vec_stop; i < stop; ++i) tail[j] += to_float(wr[i]) * xs[(t0 + j) * k + i] * s;
        }
      }
      for (int64_t j = 0; j < tn; ++j) ys[(t0 + j) * ld + r] = hsum(acc[j]) + tail[j];
    }
  }
}

// One expert matrix stack: bf16/fp32 weights, or FP8 weights with their block scales.
template <typename W>
struct Experts {
  const W* w;
  const float* scale;  // FP8 only: [E, rows, blocks]
  int64_t rows, cols, blocks;

  // ys[t * ld + r] = expert e's row r . xs[t] for r in [begin, end).
  void rows_of(int64_t e, const float* xs, int64_t m, float* ys, int64_t ld, int64_t begin, int64_t end) const {
    if constexpr (std::is_same_v<W, Fp8>) {
      matmul_rows_fp8(w + e * rows * cols, scale + e * rows * blocks, blocks, xs, m, ys, ld, cols, begin, end);
    } else {
      matmul_rows(w + e * rows * cols, xs, m, ys, ld, cols, begin, end);
    }
  }
};

// T: the activations' dtype; W: the weights' (T, or bf16 under fp32 activations: see check_weight).
template <typename T, typename W>
void matvec_typed(const at::Tensor& x, const at::Tensor& w, at::Tensor& y) {
  const int64_t n = w.size(0), k = w.size(1), m = x.numel() / k;
  float* xf = scratch<float>(m * (k + n));
  float* acc = xf + m * k;
  widen(x.data_ptr<T>(), m * k, xf);
  parallel_rows(n, m * k * int64_t(sizeof(W)), [&](int64_t b, int64_t e) {
    matmul_rows(w.data_ptr<W>(), xf, m, acc, n, k, b, e);
  });
  T* yp = y.data_ptr<T>();
  for (int64_t i = 0; i < m * n; ++i) yp[i] = static_cast<T>(acc[i]);
}

// Weights match the activations' dtype (fp32 or bf16), or are bf16 under fp32 activations: an fp32 model
// whose weights are exactly bf16 keeps them in bf16 (loader.load_model's bf16_weights). bf16 widens to
// fp32 exactly and the arithmetic is the same, so the results equal those of fp32 weights bit for bit.
void check_weight(const at::Tensor& w, const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(w.device().is_cpu() && x.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(w.is_contiguous(), op, ": ", name, " must be contiguous");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, op, ": float32 or bfloat16 only, got ",
              x.scalar_type());
  TORCH_CHECK(w.scalar_type() == x.scalar_type() || (x.scalar_type() == at::kFloat && w.scalar_type() == at::kBFloat16),
              op, ": ", name, " is ", w.scalar_type(), " but x is ", x.scalar_type());
}

// x [..., k] (a few rows), w [n, k] -> [..., n] in x's dtype, like F.linear(x, w).
at::Tensor matvec(const at::Tensor& x_in, const at::Tensor& w) {
  check_weight(w, x_in, "mmx::matvec", "w");
  TORCH_CHECK(w.dim() == 2 && x_in.dim() >= 1 && x_in.size(-1) == w.size(1), "mmx::matvec: x ", x_in.sizes(),
              " does not match w ", w.sizes());
  const at::Tensor x = x_in.contiguous();
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.size(0);
  at::Tensor y = at::empty(shape, x.options());
  if (x.scalar_type() == at::kBFloat16) {
    matvec_typed<at::BFloat16, at::BFloat16>(x, w, y);
  } else if (w.scalar_type() == at::kBFloat16) {
    matvec_typed<float, at::BFloat16>(x, w, y);
  } else {
    matvec_typed<float, float>(x, w, y);
  }
  return y;
}

// One chosen expert and its block [begin, end) of the (token, expert) rows, which are sorted by expert.
struct ExpertRows {
  int64_t expert, begin, end;
};

// Sigmoid router in fp32: the bias only picks the experts; the weights are the picked scores
// renormalised. The (token, expert) rows come out sorted by expert, then token: each row's token, routing
// weight and copy of the token's activations (row_token, row_weight [rows], xs [rows, H]). Returns the
// chosen experts in increasing order. scores [tokens, E]; work space: ints [2E + 1 + rows], floats
// [E + rows].
std::vector<ExpertRows> route(const float* xf, int64_t tokens, const float* gate, const float* bias, int64_t experts,
                              int64_t hidden, int64_t top_k, float* scores, int64_t* row_token, float* row_weight,
                              float* xs, int64_t* ints, float* floats) {
  parallel_rows(experts, tokens * hidden * 4, [&](int64_t b, int64_t e) {
    matmul_rows(gate, xf, tokens, scores, experts, hidden, b, e);
  });
  int64_t* order = ints;                     // [E]
  int64_t* count = order + experts;          // [E + 1]
  int64_t* chosen = count + experts + 1;     // [rows]: the expert of each (token, slot)
  float* choice = floats;                    // [E]
  float* slot_weight = choice + experts;     // [rows]
  std::fill(count, count + experts + 1, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    float* s = scores + t * experts;
    for (int64_t e = 0; e < experts; ++e) {
      s[e] = 1.f / (1.f + std::exp(-s[e]));
      choice[e] = bias ? s[e] + bias[e] : s[e];
    }
    std::iota(order, order + experts, 0);
    std::partial_sort(order, order + top_k, order + experts,
                      [&](int64_t a, int64_t b) { return choice[a] > choice[b] || (choice[a] == choice[b] && a < b); });
    float total = 0.f;
    for (int64_t j = 0; j < top_k; ++j) total += s[order[j]];
    for (int64_t j = 0; j < top_k; ++j) {
      chosen[t * top_k + j] = order[j];
      slot_weight[t * top_k + j] = s[order[j]] / total;
      ++count[order[j] + 1];
    }
  }
  std::vector<ExpertRows> groups;
  for (int64_t e = 0; e < experts; ++e) {
    if (count[e + 1]) groups.push_back({e, count[e], count[e] + count[e + 1]});
    count[e + 1] += count[e];  // now: the first row of expert e + 1
  }
  for (int64_t t = 0; t < tokens; ++t) {  // counting sort: rows by expert, then token
    for (int64_t j = 0; j < top_k; ++j) {
      const int64_t row = count[chosen[t * top_k + j]]++;
      row_token[row] = t;
      row_weight[row] = slot_weight[t * top_k + j];
      std::memcpy(xs + row * hidden, xf + t * hidden, hidden * sizeof(float));
    }
  }
  return groups;
}

// T: the activations' dtype (where results are rounded); W: the weights' (T, bf16 under fp32, or FP8 with
// scales).
template <typename T, typename W>
void moe_typed(const at::Tensor& x, const at::Tensor& gate, const float* bias, const Experts<W>& w13,
               const Experts<W>& w2, int64_t top_k, at::Tensor& out) {
  const int64_t tokens = x.size(0), hidden = x.size(1), experts = gate.size(0), inter = w2.cols;
  const int64_t rows = tokens * top_k;
  // Floats: xf [tokens, H], scores [tokens, E], acc [tokens, H], row_weight [rows], xs [rows, H],
  // h [rows, 2I], act [rows, I], y [rows, H], then route's work space; int64: row_token [rows], then route's.
  const int64_t route_floats = experts + rows;
  float* xf = scratch<float>(tokens * (2 * hidden + experts) + rows * (1 + 2 * hidden + 3 * inter) + route_floats);
  float* scores = xf + tokens * hidden;
  float* acc = scores + tokens * experts;
  float* row_weight = acc + tokens * hidden;
  float* xs = row_weight + rows;
  float* h = xs + rows * hidden;
  float* act = h + rows * 2 * inter;
  float* y = act + rows * inter;
  int64_t* row_token = scratch<int64_t>(rows + 2 * experts + 1 + rows);
  widen(x.data_ptr<T>(), tokens * hidden, xf);
  const std::vector<ExpertRows> groups = route(xf, tokens, gate.data_ptr<float>(), bias, experts, hidden, top_k, scores,
                                               row_token, row_weight, xs, row_token + rows, y + rows * hidden);
  // Gate and up rows of every chosen expert in one parallel pass over (expert, i): each thread computes
  // gate row i and up row I + i for its block of i, then the SwiGLU of that block, rounded where the
  // PyTorch path rounds (h, silu(gate), and the product).
  parallel_rows(int64_t(groups.size()) * inter, 2 * hidden * int64_t(sizeof(W)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e;) {
      const ExpertRows& g = groups[r / inter];
      const int64_t first = r % inter, last = first + std::min(e, r - first + inter) - r, n = g.end - g.begin;
      float* hg = h + g.begin * 2 * inter;
      w13.rows_of(g.expert, xs + g.begin * hidden, n, hg, 2 * inter, first, last);
      w13.rows_of(g.expert, xs + g.begin * hidden, n, hg, 2 * inter, inter + first, inter + last);
      for (int64_t t = 0; t < n; ++t) {
        const float* ht = hg + t * 2 * inter;
        float* at = act + (g.begin + t) * inter;
        for (int64_t i = first; i < last; ++i) {
          const float gate_v = round_to<T>(ht[i]), up = round_to<T>(ht[inter + i]);
          at[i] = round_to<T>(round_to<T>(gate_v / (1.f + std::exp(-gate_v))) * up);
        }
      }
      r += last - first;
    }
  });
  // Down projections; each thread owns a block of output rows and sums the experts into it in fp32
  // (expert by expert, in increasing order).
  std::fill(acc, acc + tokens * hidden, 0.f);
  parallel_rows(hidden, int64_t(groups.size()) * inter * int64_t(sizeof(W)), [&](int64_t b, int64_t e) {
    for (const ExpertRows& g : groups) {
      w2.rows_of(g.expert, act + g.begin * inter, g.end - g.begin, y + g.begin * hidden, hidden, b, e);
      for (int64_t row = g.begin; row < g.end; ++row) {
        float* dst = acc + row_token[row] * hidden;
        const float* yr = y + row * hidden;
        for (int64_t i = b; i < e; ++i) dst[i] += row_weight[row] * round_to<T>(yr[i]);
      }
    }
  });
  T* outp = out.data_ptr<T>();
  for (int64_t i = 0; i < tokens * hidden; ++i) outp[i] = static_cast<T>(acc[i]);
}

template <typename W>
Experts<W> experts_of(const at::Tensor& w, const std::optional<at::Tensor>& scale) {
  const int64_t rows = w.size(1), cols = w.size(2);
  if constexpr (std::is_same_v<W, Fp8>) {
    const int64_t blocks = (cols + 127) / 128;
    TORCH_CHECK(scale.has_value() && scale->scalar_type() == at::kFloat && scale->is_contiguous() &&
                    scale->sizes() == at::IntArrayRef({w.size(0), rows, blocks}),
                "mmx::moe_decode: FP8 experts ", w.sizes(), " need fp32 scales [E, rows, ", blocks, "]");
    return {static_cast<const Fp8*>(w.data_ptr()), scale->data_ptr<float>(), rows, cols, blocks};
  } else {
    return {w.data_ptr<W>(), nullptr, rows, cols, 0};
  }
}

template <typename T>
void moe_dispatch(const at::Tensor& x, const at::Tensor& gate, const float* bias, const at::Tensor& w13,
                  const at::Tensor& w2, int64_t top_k, const std::optional<at::Tensor>& w13_scale,
                  const std::optional<at::Tensor>& w2_scale, at::Tensor& out) {
  if (w13.scalar_type() == at::kFloat8_e4m3fn) {
    moe_typed<T>(x, gate, bias, experts_of<Fp8>(w13, w13_scale), experts_of<Fp8>(w2, w2_scale), top_k, out);
  } else if (w13.scalar_type() == at::kBFloat16) {  // bf16 activations, or exactly-bf16 weights under fp32
    moe_typed<T>(x, gate, bias, experts_of<at::BFloat16>(w13, w13_scale), experts_of<at::BFloat16>(w2, w2_scale),
                 top_k, out);
  } else {
    moe_typed<T>(x, gate, bias, experts_of<T>(w13, w13_scale), experts_of<T>(w2, w2_scale), top_k, out);
  }
}

// x [N, H] (a few tokens), gate [E, H] fp32, bias [E] fp32 or none, w13 [E, 2I, H] (gate rows, then up
// rows), w2 [E, H, I] -> [N, H]: route each token to top_k experts and sum their SwiGLU outputs. The
// experts are in x's dtype, or FP8 e4m3 with fp32 scales per row and 128-column block (w13_scale
// [E, 2I, ceil(H/128)], w2_scale [E, H, ceil(I/128)]).
at::Tensor moe_decode(const at::Tensor& x_in, const at::Tensor& gate, const std::optional<at::Tensor>& bias,
                      const at::Tensor& w13, const at::Tensor& w2, int64_t top_k,
                      const std::optional<at::Tensor>& w13_scale, const std::optional<at::Tensor>& w2_scale) {
  const bool fp8 = w13.scalar_type() == at::kFloat8_e4m3fn;
  TORCH_CHECK(!fp8 || w2.scalar_type() == at::kFloat8_e4m3fn, "mmx::moe_decode: w13 is FP8 but w2 is not");
  for (const auto* w : {&w13, &w2}) {
    TORCH_CHECK(w->is_contiguous() && w->device().is_cpu(), "mmx::moe_decode: experts must be contiguous CPU tensors");
  }
  if (!fp8) {
    check_weight(w13, x_in, "mmx::moe_decode", "w13");
    check_weight(w2, x_in, "mmx::moe_decode", "w2");
    TORCH_CHECK(w13.scalar_type() == w2.scalar_type(), "mmx::moe_decode: w13 is ", w13.scalar_type(), " but w2 is ",
                w2.scalar_type());
  }
  TORCH_CHECK(x_in.scalar_type() == at::kFloat || x_in.scalar_type() == at::kBFloat16,
              "mmx::moe_decode: float32 or bfloat16 only, got ", x_in.scalar_type());
  const at::Tensor x = x_in.contiguous();
  TORCH_CHECK(x.dim() == 2 && w13.dim() == 3 && w2.dim() == 3, "mmx::moe_decode: x [N, H], w13 [E, 2I, H], w2 [E, H, I]");
  const int64_t experts = w13.size(0), hidden = x.size(1), inter = w2.size(2);
  TORCH_CHECK(w13.size(1) == 2 * inter && w13.size(2) == hidden && w2.size(0) == experts && w2.size(1) == hidden,
              "mmx::moe_decode: w13 ", w13.sizes(), " and w2 ", w2.sizes(), " do not fit x ", x.sizes());
  TORCH_CHECK(gate.scalar_type() == at::kFloat && gate.is_contiguous() && gate.dim() == 2 && gate.size(0) == experts &&
                  gate.size(1) == hidden,
              "mmx::moe_decode: gate must be contiguous fp32 [E, H], got ", gate.sizes());
  TORCH_CHECK(top_k >= 1 && top_k <= experts, "mmx::moe_decode: top_k ", top_k, " out of range for ", experts,
              " experts");
  const float* bias_ptr = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == experts,
                "mmx::moe_decode: bias must be contiguous fp32 [E]");
    bias_ptr = bias->data_ptr<float>();
  }
  at::Tensor out = at::empty_like(x);
  if (x.scalar_type() == at::kFloat) {
    moe_dispatch<float>(x, gate, bias_ptr, w13, w2, top_k, w13_scale, w2_scale, out);
  } else {
    moe_dispatch<at::BFloat16>(x, gate, bias_ptr, w13, w2, top_k, w13_scale, w2_scale, out);
  }
  return out;
}

// Query head h of one token (q_row: its H x D values) against `length` cache positions of its KV head.
template <typename T>
inline void attend_head(const T* q_row, const T* kp, const T* vp, int64_t h, int64_t group, int64_t dim,
                        int64_t length, int64_t k_head, int64_t k_pos, int64_t v_head, int64_t v_pos, float scale,
                        float* qf, float* scores, float* acc, T* out_row) {
  const T* kh = kp + (h / group) * k_head;
  const T* vh = vp + (h / group) * v_head;
  for (int64_t d = 0; d < dim; ++d) qf[d] = to_float(q_row[h * dim + d]);
  float top = -INFINITY;
  for (int64_t s = 0; s < length; ++s) {
    scores[s] = dot(kh + s * k_pos, qf, dim) * scale;
    top = std::max(top, scores[s]);
  }
  float total = 0.f;
  std::fill(acc, acc + dim, 0.f);
  for (int64_t s = 0; s < length; ++s) {
    const float p = std::exp(scores[s] - top);
    total += p;
    const T* vs = vh + s * v_pos;
    for (int64_t d = 0; d < dim; ++d) acc[d] += p * to_float(vs[d]);
  }
  for (int64_t d = 0; d < dim; ++d) out_row[h * dim + d] = static_cast<T>(acc[d] / total);
}

template <typename T>
void attention_typed(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t length, double scale,
                     at::Tensor& out) {
  const int64_t heads = q.size(1), kv_heads = k.size(1), dim = q.size(3), group = heads / kv_heads;
  const int64_t k_head = k.stride(1), k_pos = k.stride(2), v_head = v.stride(1), v_pos = v.stride(2);
  const T* qp = q.data_ptr<T>();
  const T* kp = k.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, heads, 1, [&](int64_t begin, int64_t end) {
    float* qf = scratch<float>(2 * dim + length);
    for (int64_t h = begin; h < end; ++h) {
      attend_head(qp, kp, vp, h, group, dim, length, k_head, k_pos, v_head, v_pos, static_cast<float>(scale), qf,
                  qf + dim, qf + dim + length, op);
    }
  });
}

// A batch of tokens, token b in cache row rows[b] at position input_pos[b]: each (token, head) pair is
// computed exactly as decode_attention computes it for that token alone.
template <typename T>
void attention_rows_typed(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const int64_t* rows,
                          const int64_t* lengths, int64_t max_length, double scale, at::Tensor& out) {
  const int64_t batch = q.size(0), heads = q.size(1), dim = q.size(3), group = heads / k.size(1);
  const int64_t k_head = k.stride(1), k_pos = k.stride(2), v_head = v.stride(1), v_pos = v.stride(2);
  const T* qp = q.data_ptr<T>();
  const T* kp = k.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    float* qf = scratch<float>(2 * dim + max_length);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / heads, h = i % heads;
      attend_head(qp + b * heads * dim, kp + rows[b] * k.stride(0), vp + rows[b] * v.stride(0), h, group, dim,
                  lengths[b], k_head, k_pos, v_head, v_pos, static_cast<float>(scale), qf, qf + dim,
                  qf + dim + max_length, op + b * heads * dim);
    }
  });
}

// One query token against a KV cache: q [1, H, 1, D]; k, v [1, KV, S, D] (the whole static cache; rows
// may be strided); the token sits at position input_pos[0] and sees positions 0..input_pos[0] (the causal
// mask of one token), so only those cache rows are read. Query head h reads KV head h / (H / KV) (GQA).
at::Tensor decode_attention(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& input_pos, double scale) {
  const char* op = "mmx::decode_attention";
  check_weight(k, q_in, op, "k");
  check_weight(v, q_in, op, "v");
  TORCH_CHECK(k.scalar_type() == q_in.scalar_type() && v.scalar_type() == q_in.scalar_type(), op,
              ": the cache must be in q's dtype ", q_in.scalar_type(), ", got ", k.scalar_type());
  TORCH_CHECK(q_in.dim() == 4 && q_in.size(0) == 1 && q_in.size(2) == 1, op, ": q must be [1, H, 1, D], got ",
              q_in.sizes());
  TORCH_CHECK(k.dim() == 4 && k.size(0) == 1 && k.sizes() == v.sizes() && k.size(3) == q_in.size(3) &&
                  k.stride(3) == 1 && v.stride(3) == 1,
              op, ": k and v must be [1, KV, S, D] with contiguous rows, got ", k.sizes(), " and ", v.sizes());
  TORCH_CHECK(q_in.size(1) % k.size(1) == 0, op, ": ", q_in.size(1), " query heads do not group over ", k.size(1),
              " KV heads");
  TORCH_CHECK(input_pos.numel() == 1 && input_pos.scalar_type() == at::kLong, op, ": input_pos must be one int64");
  const int64_t pos = input_pos.item<int64_t>();
  TORCH_CHECK(pos >= 0 && pos < k.size(2), op, ": position ", pos, " is outside the cache of ", k.size(2));
  const at::Tensor q = q_in.contiguous();
  at::Tensor out = at::empty_like(q);
  if (q.scalar_type() == at::kFloat) {
    attention_typed<float>(q, k, v, pos + 1, scale, out);
  } else {
    attention_typed<at::BFloat16>(q, k, v, pos + 1, scale, out);
  }
  return out;
}

// decode_attention for a batch of tokens, each in a cache row of its own: q [B, H, 1, D]; k, v the whole
// cache [R, KV, S, D]; token b reads cache row rows[b] at positions 0..input_pos[b] (both int64 [B]).
at::Tensor decode_attention_rows(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& rows, const at::Tensor& input_pos, double scale) {
  const char* op = "mmx::decode_attention_rows";
  check_weight(k, q_in, op, "k");
  check_weight(v, q_in, op, "v");
  TORCH_CHECK(k.scalar_type() == q_in.scalar_type() && v.scalar_type() == q_in.scalar_type(), op,
              ": the cache must be in q's dtype ", q_in.scalar_type(), ", got ", k.scalar_type());
  TORCH_CHECK(q_in.dim() == 4 && q_in.size(2) == 1, op, ": q must be [B, H, 1, D], got ", q_in.sizes());
  TORCH_CHECK(k.dim() == 4 && k.sizes() == v.sizes() && k.size(3) == q_in.size(3) && k.stride(3) == 1 &&
                  v.stride(3) == 1,
              op, ": k and v must be [R, KV, S, D] with contiguous rows, got ", k.sizes(), " and ", v.sizes());
  TORCH_CHECK(q_in.size(1) % k.size(1) == 0, op, ": ", q_in.size(1), " query heads do not group over ", k.size(1),
              " KV heads");
  const int64_t batch = q_in.size(0);
  TORCH_CHECK(rows.numel() == batch && input_pos.numel() == batch && rows.scalar_type() == at::kLong &&
                  input_pos.scalar_type() == at::kLong,
              op, ": rows and input_pos must be ", batch, " int64 each");
  const at::Tensor rows_c = rows.contiguous().cpu(), pos_c = input_pos.contiguous().cpu();
  std::vector<int64_t> lengths(batch);
  int64_t max_length = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t row = rows_c.data_ptr<int64_t>()[b], pos = pos_c.data_ptr<int64_t>()[b];
    TORCH_CHECK(row >= 0 && row < k.size(0), op, ": row ", row, " is outside the cache of ", k.size(0), " rows");
    TORCH_CHECK(pos >= 0 && pos < k.size(2), op, ": position ", pos, " is outside the cache of ", k.size(2));
    lengths[b] = pos + 1;
    max_length = std::max(max_length, pos + 1);
  }
  const at::Tensor q = q_in.contiguous();
  at::Tensor out = at::empty_like(q);
  if (q.scalar_type() == at::kFloat) {
    attention_rows_typed<float>(q, k, v, rows_c.data_ptr<int64_t>(), lengths.data(), max_length, scale, out);
  } else {
    attention_rows_typed<at::BFloat16>(q, k, v, rows_c.data_ptr<int64_t>(), lengths.data(), max_length, scale, out);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(mmx, m) {
  m.def("matvec(Tensor x, Tensor w) -> Tensor");
  m.def(
      "moe_decode(Tensor x, Tensor gate, Tensor? bias, Tensor w13, Tensor w2, int top_k, Tensor? w13_scale=None, "
      "Tensor? w2_scale=None) -> Tensor");
  m.def("decode_attention(Tensor q, Tensor k, Tensor v, Tensor input_pos, float scale) -> Tensor");
  m.def("decode_attention_rows(Tensor q, Tensor k, Tensor v, Tensor rows, Tensor input_pos, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(mmx, CPU, m) {
  m.impl("matvec", &matvec);
  m.impl("moe_decode", &moe_decode);
  m.impl("decode_attention", &decode_attention);
  m.impl("decode_attention_rows", &decode_attention_rows);
}

// C entry points for the ahead-of-time compiled decode step (compiled.py): AOTInductor calls a custom op
// through these (named aoti_torch_<device>_<op>) instead of boxing its arguments through the dispatcher.
using torch::aot_inductor::new_tensor_handle;
using torch::aot_inductor::pointer_to_optional;
using torch::aot_inductor::tensor_handle_to_tensor_pointer;

extern "C" {

AOTITorchError aoti_torch_cpu_matvec(AtenTensorHandle x, AtenTensorHandle w, AtenTensorHandle* ret0) {
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE(
      { *ret0 = new_tensor_handle(matvec(*tensor_handle_to_tensor_pointer(x), *tensor_handle_to_tensor_pointer(w))); });
}

AOTITorchError aoti_torch_cpu_moe_decode(AtenTensorHandle x, AtenTensorHandle gate, AtenTensorHandle* bias,
                                         AtenTensorHandle w13, AtenTensorHandle w2, int64_t top_k,
                                         AtenTensorHandle* w13_scale, AtenTensorHandle* w2_scale,
                                         AtenTensorHandle* ret0) {
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE({
    *ret0 = new_tensor_handle(moe_decode(*tensor_handle_to_tensor_pointer(x), *tensor_handle_to_tensor_pointer(gate),
                                         pointer_to_optional<at::Tensor>(bias), *tensor_handle_to_tensor_pointer(w13),
                                         *tensor_handle_to_tensor_pointer(w2), top_k,
                                         pointer_to_optional<at::Tensor>(w13_scale),
                                         pointer_to_optional<at::Tensor>(w2_scale)));
  });
}

AOTITorchError aoti_torch_cpu_decode_attention(AtenTensorHandle q, AtenTensorHandle k, AtenTensorHandle v,
                                               AtenTensorHandle input_pos, double scale, AtenTensorHandle* ret0) {
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE({
    *ret0 = new_tensor_handle(decode_attention(*tensor_handle_to_tensor_pointer(q), *tensor_handle_to_tensor_pointer(k),
                                               *tensor_handle_to_tensor_pointer(v),
                                               *tensor_handle_to_tensor_pointer(input_pos), scale));
  });
}

}  // extern "C"
