// CPU kernels of excite's fused SE-family training path.
//
// Every full-size tensor arrives as an (N, C, S) view whose unit stride is along S ("NCS", the
// contiguous layout) or along C ("NSC", channels_last); the Python side (excite/fused/_cpu.py and
// functions.py) makes the views and owns the contract of each function. Small per-row ([N, C]),
// per-position ([N, S]) and per-channel ([C]) tensors are contiguous in the accumulation type: float,
// or double for float64 inputs (gradcheck). Half-precision values are widened to float on load and
// rounded (to nearest even) once on store.
//
// Each kernel is one pass over its full-size operands, parallelised with at::parallel_for over rows
// (n, c) in NCS, or over tiles (n, block of positions) / (n, block of channels) in NSC and wherever a
// reduction runs across channels. The inner loops are small functions over __restrict raw pointers
// ("runs" along the unit-stride axis) so that they vectorise; inside the parallel lambdas GCC often
// does not.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#define EXCITE_PRAGMA(text) _Pragma(#text)
#define EXCITE_SIMD EXCITE_PRAGMA(omp simd)
#define EXCITE_SIMD_SUM(...) EXCITE_PRAGMA(omp simd reduction(+ : __VA_ARGS__))
#define EXCITE_R __restrict
// Runs stay out of line: inlined into the parallel lambdas, GCC falls back to scalar code for some of
// them (an `omp simd` loop in a context with exception edges); a call per row or position is cheap.
#define EXCITE_RUN __attribute__((noinline))

namespace excite_fused {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// ---------------------------------------------------------------------------------------------------
// Scalars. The half-precision conversions are the branch-free bit manipulations of the FP16 library
// (the ones c10 uses), written so that they vectorise.

template <typename T>
using acc_t = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

inline float half_bits_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = std::bit_cast<float>((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = std::bit_cast<float>((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t magnitude =
      two_w < (1u << 27) ? std::bit_cast<uint32_t>(denormalized) : std::bit_cast<uint32_t>(normalized);
  return std::bit_cast<float>(sign | magnitude);
}

inline uint16_t float_to_half_bits(float f) {
  const uint32_t w = std::bit_cast<uint32_t>(f);
  float base = (std::bit_cast<float>(w & 0x7FFFFFFFu) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

inline uint16_t float_to_bfloat16_bits(float f) {
  const uint32_t w = std::bit_cast<uint32_t>(f);
  const bool is_nan = (w & 0x7FFFFFFFu) > 0x7F800000u;
  const uint32_t rounded = (w + 0x7FFFu + ((w >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(is_nan ? 0x7FC0u : rounded);
}

inline float load(const float* p) { return *p; }
inline double load(const double* p) { return *p; }
inline float load(const at::BFloat16* p) { return std::bit_cast<float>(static_cast<uint32_t>(p->x) << 16); }
inline float load(const at::Half* p) { return half_bits_to_float(p->x); }

inline void store(float* p, float v) { *p = v; }
inline void store(double* p, double v) { *p = v; }
inline void store(at::BFloat16* p, float v) { p->x = float_to_bfloat16_bits(v); }
inline void store(at::Half* p, float v) { p->x = float_to_half_bits(v); }

// The value v would have after a round trip through T: the reference path rounds every intermediate
// product to the input dtype, and comparisons (max-out, argmax ties) must see the same values.
template <typename T>
inline acc_t<T> round_to(acc_t<T> v) {
  if constexpr (std::is_same<T, at::BFloat16>::value) {
    return std::bit_cast<float>(static_cast<uint32_t>(float_to_bfloat16_bits(v)) << 16);
  } else if constexpr (std::is_same<T, at::Half>::value) {
    return half_bits_to_float(float_to_half_bits(v));
  } else {
    return v;
  }
}

// exp(-e) for e >= 0 (Cephes-style expf, about 1 ulp; rounding by the 1.5 * 2^23 trick), branch-free
// so that the loops around it vectorise. Only the upper clamp exists on purpose: GCC if-converts a
// clamp into a constant branch evaluated for every lane, and a clamp at exp(+88) would make that
// constant 1/(1+e^88), a subnormal, whose multiplications cost a microcode assist on every element.
inline float exp_neg(float e) {
  const float x = -(e > 87.0f ? 87.0f : e);
  const float magic = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + magic;
  const float n = shifted - magic;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = (p * r) * r + r + 1.0f;
  const int32_t exponent = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(magic);
  return p * std::bit_cast<float>((exponent + 127) << 23);
}
// sigmoid(e) for e >= 0 (SimAM's energy is >= 1/2), in [1/2, 1].
inline float sigmoid_nonnegative(float e) { return 1.0f / (1.0f + exp_neg(e)); }
inline double sigmoid_nonnegative(double e) { return 1.0 / (1.0 + std::exp(-e)); }

// Running max with the number of elements equal to it (amax's backward splits among ties).
template <typename A>
inline void max_update(A v, A& m, A& k) {
  const bool greater = v > m;
  const bool equal = v == m;
  k = greater ? A(1) : (equal ? k + A(1) : k);
  m = greater ? v : m;
}

// ---------------------------------------------------------------------------------------------------
// Geometry, checks and parallel decompositions.

struct Geometry {
  int64_t N, C, S;
  bool cl;  // channels_last: unit stride along C
};

template <typename T>
struct View {
  T* p;
  int64_t sN, sC, sS;
  T* row(int64_t n, int64_t c) const { return p + n * sN + c * sC; }  // NCS: then index by s
  T* pos(int64_t n, int64_t s) const { return p + n * sN + s * sS; }  // NSC: then index by c
};

template <typename T>
View<T> view_of(const Tensor& t) {
  return {t.data_ptr<T>(), t.stride(0), t.stride(1), t.stride(2)};
}

template <typename T>
View<T> no_view() {
  return {nullptr, 0, 0, 0};
}

void check_full(const Tensor& t, const Geometry& g, const char* what) {
  TORCH_CHECK(t.dim() == 3 && t.size(0) == g.N && t.size(1) == g.C && t.size(2) == g.S, what,
              ": expected an (N, C, S) tensor of shape [", g.N, ", ", g.C, ", ", g.S, "], got ", t.sizes());
  if (g.cl) {
    TORCH_CHECK(g.C == 1 || t.stride(1) == 1, what, ": expected unit stride along C (channels_last)");
  } else {
    TORCH_CHECK(g.S == 1 || t.stride(2) == 1, what, ": expected unit stride along S (contiguous)");
  }
}

void check_small(const Tensor& t, at::ScalarType acc, int64_t numel, const char* what) {
  TORCH_CHECK(t.is_contiguous() && t.scalar_type() == acc && t.numel() == numel, what,
              ": expected a contiguous ", acc, " tensor with ", numel, " elements, got ", t.scalar_type(), " ",
              t.sizes());
}

void check_filter(const Tensor& f, const Geometry& g, at::ScalarType acc) {
  TORCH_CHECK(f.dim() == 2 && f.size(0) == g.C && f.size(1) == g.S && f.scalar_type() == acc,
              "filter: expected a (C, S) tensor in the accumulation dtype, got ", f.scalar_type(), " ", f.sizes());
  TORCH_CHECK(g.cl ? (g.C == 1 || f.stride(0) == 1) : (g.S == 1 || f.stride(1) == 1),
              "filter: expected unit stride along the layout's inner axis");
}

at::ScalarType acc_type(const Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

template <typename A>
const A* ptr_or_null(const OptTensor& t) {
  return t.has_value() ? t->data_ptr<A>() : nullptr;
}

Geometry geometry(const Tensor& x, bool channels_last) {
  TORCH_CHECK(x.dim() == 3, "excite fused kernels take (N, C, S) views, got ", x.sizes());
  Geometry g{x.size(0), x.size(1), x.size(2), channels_last};
  check_full(x, g, "x");
  return g;
}

inline int64_t row_grain(int64_t S) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(S, 1)); }

// NCS rows: f(n, c) handles the whole unit-stride row. Channel-major order visits the N rows of one
// channel in turn, so that a per-channel (C, S) filter row stays in cache across the batch.
template <class F>
void parallel_rows(const Geometry& g, const F& f, bool channel_major = false) {
  const int64_t N = g.N, C = g.C;
  at::parallel_for(0, N * C, row_grain(g.S), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (channel_major) {
        f(r % N, r / N);
      } else {
        f(r / C, r % C);
      }
    }
  });
}

// Tiles of (n, positions [s0, s1)) spanning all channels; used for reductions across channels.
struct TilePlan {
  int64_t block, blocks, tiles;
};

// NSC tiles hold ~32K elements (block x C); NCS tiles (reductions across channels) use blocks of at
// least 1024 positions, so that each of the C rows is read in runs of 4 KiB that the prefetchers follow.
TilePlan tile_plan(const Geometry& g) {
  int64_t block = std::max<int64_t>(g.cl ? 16 : 1024, 32768 / std::max<int64_t>(g.C, 1));
  block = (block + 15) / 16 * 16;
  const int64_t want = 4 * static_cast<int64_t>(at::get_num_threads());
  while (block > 16 && g.N * ((g.S + block - 1) / block) < want) {
    block = std::max<int64_t>(16, (block / 2 + 15) / 16 * 16);
  }
  block = std::min(block, std::max<int64_t>(g.S, 1));
  const int64_t blocks = (g.S + block - 1) / block;
  return {block, blocks, g.N * blocks};
}

// f(n, s0, s1, tile) with tile = n * blocks + block index (the partial buffers' row). Position-major
// order visits the N tiles of one block of positions in turn (a per-position filter stays in cache).
template <class F>
void parallel_tiles(const Geometry& g, const TilePlan& plan, const F& f, bool position_major = false) {
  const int64_t N = g.N, S = g.S, block = plan.block, blocks = plan.blocks;
  at::parallel_for(0, plan.tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = position_major ? t % N : t / blocks;
      const int64_t b = position_major ? t / N : t % blocks;
      const int64_t s0 = b * block;
      f(n, s0, std::min(S, s0 + block), n * blocks + b);
    }
  });
}

// NSC channel blocks: f(n, c0, c1) walks every position for channels [c0, c1).
// 256 channels = 1 KiB of fp32 per position: long enough runs for the prefetchers.
constexpr int64_t kChannelBlock = 256;

template <class F>
void parallel_channel_blocks(const Geometry& g, const F& f) {
  const int64_t C = g.C;
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, g.N * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t c0 = (t % blocks) * kChannelBlock;
      f(t / blocks, c0, std::min(C, c0 + kChannelBlock));
    }
  });
}

// Sum the per-tile row partials [tiles, C] into [N, C].
template <typename A>
void reduce_tile_partials(const Geometry& g, const TilePlan& plan, const A* partial, A* out) {
  const int64_t C = g.C, blocks = plan.blocks;
  at::parallel_for(0, g.N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      A* o = out + n * C;
      std::fill(o, o + C, A(0));
      for (int64_t b = 0; b < blocks; ++b) {
        const A* p = partial + (n * blocks + b) * C;
        for (int64_t c = 0; c < C; ++c) o[c] += p[c];
      }
    }
  });
}

// Combine per-tile (max, ties) partials [tiles, C] into [N, C].
template <typename A>
void reduce_tile_max(const Geometry& g, const TilePlan& plan, const A* pmax, const A* pties, A* out_max,
                     A* out_ties) {
  const int64_t C = g.C, blocks = plan.blocks;
  at::parallel_for(0, g.N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        A best = -std::numeric_limits<A>::infinity(), ties = 0;
        for (int64_t b = 0; b < blocks; ++b) best = std::max(best, pmax[(n * blocks + b) * C + c]);
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t i = (n * blocks + b) * C + c;
          ties += pmax[i] == best ? pties[i] : A(0);
        }
        out_max[n * C + c] = best;
        out_ties[n * C + c] = ties;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Generic runs.

template <typename T, typename A = acc_t<T>>
EXCITE_RUN A sum_run(const T* EXCITE_R x, int64_t len) {
  A total = 0;
  EXCITE_SIMD_SUM(total)
  for (int64_t i = 0; i < len; ++i) total += load(x + i);
  return total;
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN A weighted_sum_run(const T* EXCITE_R x, const A* EXCITE_R w, int64_t len) {
  A total = 0;
  EXCITE_SIMD_SUM(total)
  for (int64_t i = 0; i < len; ++i) total += load(x + i) * w[i];
  return total;
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN A squared_deviation_run(const T* EXCITE_R x, A mean, int64_t len) {
  A total = 0;
  EXCITE_SIMD_SUM(total)
  for (int64_t i = 0; i < len; ++i) {
    const A d = load(x + i) - mean;
    total += d * d;
  }
  return total;
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void accumulate_run(const T* EXCITE_R x, A* EXCITE_R acc, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) acc[i] += load(x + i);
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void weighted_accumulate_run(const T* EXCITE_R x, const A* EXCITE_R w, A* EXCITE_R acc, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) acc[i] += load(x + i) * w[i];
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void scaled_accumulate_run(const T* EXCITE_R x, A k, A* EXCITE_R acc, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) acc[i] += k * load(x + i);
}

// sum, max and ties over a unit-stride run (lanes keep the max/tie updates vectorisable)
template <typename T, typename A = acc_t<T>>
EXCITE_RUN void sum_max_run(const T* EXCITE_R x, int64_t len, A& sum, A& best, A& ties) {
  constexpr int L = 16;
  A acc[L], m[L], k[L];
  for (int l = 0; l < L; ++l) {
    acc[l] = 0;
    m[l] = -std::numeric_limits<A>::infinity();
    k[l] = 0;
  }
  int64_t i = 0;
  for (; i + L <= len; i += L) {
    for (int l = 0; l < L; ++l) {
      const A v = load(x + i + l);
      acc[l] += v;
      max_update(v, m[l], k[l]);
    }
  }
  for (; i < len; ++i) {
    const A v = load(x + i);
    acc[0] += v;
    max_update(v, m[0], k[0]);
  }
  A total = 0, top = -std::numeric_limits<A>::infinity(), count = 0;
  for (int l = 0; l < L; ++l) {
    total += acc[l];
    top = std::max(top, m[l]);
  }
  for (int l = 0; l < L; ++l) count += m[l] == top ? k[l] : A(0);
  sum = total;
  best = top;
  ties = count;
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void sum_max_accumulate_run(const T* EXCITE_R x, A* EXCITE_R acc, A* EXCITE_R m, A* EXCITE_R k, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    acc[i] += v;
    max_update(v, m[i], k[i]);
  }
}

// ---------------------------------------------------------------------------------------------------
// channel_stats: per (n, c) the sum of x (or of filter[c, s] * x) and optionally the max with its tie
// count. filter is (C, S) with unit stride along the layout's inner axis.

template <typename T, bool FILTER, bool MAX>
void channel_stats_kernel(const Tensor& x, const Geometry& g, const OptTensor& filter, Tensor& sum, Tensor& mx,
                          Tensor& count) {
  using A = acc_t<T>;
  const View<T> X = view_of<T>(x);
  const A* F = FILTER ? filter->data_ptr<A>() : nullptr;
  const int64_t fC = FILTER ? filter->stride(0) : 0;
  const int64_t fS = FILTER ? filter->stride(1) : 0;
  A* out_sum = sum.data_ptr<A>();
  A* out_max = MAX ? mx.data_ptr<A>() : nullptr;
  A* out_count = MAX ? count.data_ptr<A>() : nullptr;
  const int64_t C = g.C, S = g.S;
  if (!g.cl) {
    parallel_rows(g, [&](int64_t n, int64_t c) {
      const T* xp = X.row(n, c);
      if constexpr (MAX) {
        sum_max_run(xp, S, out_sum[n * C + c], out_max[n * C + c], out_count[n * C + c]);
      } else if constexpr (FILTER) {
        out_sum[n * C + c] = weighted_sum_run(xp, F + c * fC, S);
      } else {
        out_sum[n * C + c] = sum_run(xp, S);
      }
    }, FILTER);
    return;
  }
  // NSC: tiles of positions with full-C runs, per-tile partials reduced afterwards.
  const TilePlan plan = tile_plan(g);
  std::vector<A> partial(plan.tiles * C * (MAX ? 3 : 1));
  A* PS = partial.data();
  A* PM = PS + plan.tiles * C;
  A* PK = PM + plan.tiles * C;
  parallel_tiles(g, plan, [&](int64_t n, int64_t s0, int64_t s1, int64_t t) {
    A* acc = PS + t * C;
    std::fill(acc, acc + C, A(0));
    if (MAX) {
      std::fill(PM + t * C, PM + (t + 1) * C, -std::numeric_limits<A>::infinity());
      std::fill(PK + t * C, PK + (t + 1) * C, A(0));
    }
    for (int64_t s = s0; s < s1; ++s) {
      if constexpr (MAX) {
        sum_max_accumulate_run(X.pos(n, s), acc, PM + t * C, PK + t * C, C);
      } else if constexpr (FILTER) {
        weighted_accumulate_run(X.pos(n, s), F + s * fS, acc, C);
      } else {
        accumulate_run(X.pos(n, s), acc, C);
      }
    }
  }, FILTER);
  reduce_tile_partials(g, plan, PS, out_sum);
  if (MAX) reduce_tile_max(g, plan, PM, PK, out_max, out_count);
}

std::vector<Tensor> channel_stats(const Tensor& x, bool channels_last, const OptTensor& filter, bool with_max) {
  const Geometry g = geometry(x, channels_last);
  const auto acc = acc_type(x);
  auto opts = x.options().dtype(acc);
  Tensor sum = at::empty({g.N, g.C}, opts);
  Tensor mx = with_max ? at::empty({g.N, g.C}, opts) : at::empty({0}, opts);
  Tensor count = with_max ? at::empty({g.N, g.C}, opts) : at::empty({0}, opts);
  if (filter.has_value()) check_filter(*filter, g, acc);
  TORCH_CHECK(!(filter.has_value() && with_max), "channel_stats: a filter and the max are not combined");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_stats", [&] {
    if (filter.has_value()) {
      channel_stats_kernel<scalar_t, true, false>(x, g, filter, sum, mx, count);
    } else if (with_max) {
      channel_stats_kernel<scalar_t, false, true>(x, g, filter, sum, mx, count);
    } else {
      channel_stats_kernel<scalar_t, false, false>(x, g, filter, sum, mx, count);
    }
  });
  return {sum, mx, count};
}

// ---------------------------------------------------------------------------------------------------
// channel_moments: per (n, c) the mean and M2 = sum (x - mean)^2 (SimAM). NCS rows are short enough
// to stay in cache, so the exact two-pass form is used there; NSC uses one pass about a per-channel
// shift (the first value), accumulated in double.

template <typename T>
EXCITE_RUN void shifted_moments_run(const T* EXCITE_R x, const double* EXCITE_R shift, double* EXCITE_R s1,
                         double* EXCITE_R s2, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const double d = static_cast<double>(load(x + i)) - shift[i];
    s1[i] += d;
    s2[i] += d * d;
  }
}

template <typename T>
void channel_moments_kernel(const Tensor& x, const Geometry& g, Tensor& mean, Tensor& m2) {
  using A = acc_t<T>;
  const View<T> X = view_of<T>(x);
  A* out_mean = mean.data_ptr<A>();
  A* out_m2 = m2.data_ptr<A>();
  const int64_t C = g.C, S = g.S;
  if (!g.cl) {
    parallel_rows(g, [&](int64_t n, int64_t c) {
      const T* xp = X.row(n, c);
      const A mu = sum_run(xp, S) / static_cast<A>(S);
      out_mean[n * C + c] = mu;
      out_m2[n * C + c] = squared_deviation_run(xp, mu, S);
    });
    return;
  }
  // NSC: shifted sums (shift = the first value of each (n, c)) per tile of positions, then combined.
  const int64_t N = g.N;
  std::vector<double> shift(N * C);
  for (int64_t n = 0; n < N; ++n) {
    const T* first = X.pos(n, 0);
    for (int64_t c = 0; c < C; ++c) shift[n * C + c] = static_cast<double>(load(first + c));
  }
  const TilePlan plan = tile_plan(g);
  std::vector<double> partial(2 * plan.tiles * C, 0.0);
  double* P1 = partial.data();
  double* P2 = P1 + plan.tiles * C;
  parallel_tiles(g, plan, [&](int64_t n, int64_t s0, int64_t s1, int64_t t) {
    for (int64_t s = s0; s < s1; ++s) shifted_moments_run(X.pos(n, s), shift.data() + n * C, P1 + t * C, P2 + t * C, C);
  });
  const double count = static_cast<double>(S);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      double a = 0, b = 0;
      for (int64_t blk = 0; blk < plan.blocks; ++blk) {
        a += P1[(n * plan.blocks + blk) * C + c];
        b += P2[(n * plan.blocks + blk) * C + c];
      }
      out_mean[n * C + c] = static_cast<A>(shift[n * C + c] + a / count);
      out_m2[n * C + c] = static_cast<A>(std::max(0.0, b - a * a / count));
    }
  }
}

std::vector<Tensor> channel_moments(const Tensor& x, bool channels_last) {
  const Geometry g = geometry(x, channels_last);
  auto opts = x.options().dtype(acc_type(x));
  Tensor mean = at::empty({g.N, g.C}, opts);
  Tensor m2 = at::empty({g.N, g.C}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_moments",
                                  [&] { channel_moments_kernel<scalar_t>(x, g, mean, m2); });
  return {mean, m2};
}

// ---------------------------------------------------------------------------------------------------
// Gates built from a per-row value r[n, c] and a per-position value p[n, s].

enum Mode : int64_t { kRow = 0, kPos = 1, kRowPos = 2, kMax = 3, kAdd = 4, kMul = 5 };

template <int MODE>
constexpr bool uses_row() {
  return MODE != kPos;
}
template <int MODE>
constexpr bool uses_pos() {
  return MODE != kRow;
}

template <typename T, int MODE>
inline acc_t<T> gated(acc_t<T> v, acc_t<T> r, acc_t<T> p) {
  using A = acc_t<T>;
  if constexpr (MODE == kRow) {
    return v * r;
  } else if constexpr (MODE == kPos) {
    return v * p;
  } else if constexpr (MODE == kRowPos) {
    return round_to<T>(v * r) * p;
  } else if constexpr (MODE == kMax) {
    const A a = round_to<T>(v * r);
    const A b = round_to<T>(v * p);
    return a > b ? a : b;
  } else if constexpr (MODE == kAdd) {
    return round_to<T>(v * r) + round_to<T>(v * p);
  } else {
    return round_to<T>(v * r) * round_to<T>(v * p);
  }
}

// NCS: one row (fixed r), positions vary. NSC: one position (fixed p), channels vary.
template <typename T, int MODE, typename A = acc_t<T>>
EXCITE_RUN void apply_row_run(const T* EXCITE_R x, T* EXCITE_R y, A r, const A* EXCITE_R p, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) store(y + i, gated<T, MODE>(load(x + i), r, uses_pos<MODE>() ? p[i] : A(0)));
}

template <typename T, int MODE, typename A = acc_t<T>>
EXCITE_RUN void apply_pos_run(const T* EXCITE_R x, T* EXCITE_R y, const A* EXCITE_R r, A p, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) store(y + i, gated<T, MODE>(load(x + i), uses_row<MODE>() ? r[i] : A(0), p));
}

template <typename T, int MODE>
void gate_apply_kernel(const Tensor& x, const Geometry& g, const OptTensor& row, const OptTensor& pos,
                       const Tensor& out) {
  using A = acc_t<T>;
  const View<T> X = view_of<T>(x);
  const View<T> Y = view_of<T>(out);
  const A* R = ptr_or_null<A>(row);
  const A* P = ptr_or_null<A>(pos);
  const int64_t C = g.C, S = g.S;
  if (!g.cl) {
    parallel_rows(g, [&](int64_t n, int64_t c) {
      const A r = uses_row<MODE>() ? R[n * C + c] : A(0);
      apply_row_run<T, MODE>(X.row(n, c), Y.row(n, c), r, uses_pos<MODE>() ? P + n * S : nullptr, S);
    });
    return;
  }
  parallel_tiles(g, tile_plan(g), [&](int64_t n, int64_t s0, int64_t s1, int64_t) {
    const A* rp = uses_row<MODE>() ? R + n * C : nullptr;
    for (int64_t s = s0; s < s1; ++s) {
      const A p = uses_pos<MODE>() ? P[n * S + s] : A(0);
      apply_pos_run<T, MODE>(X.pos(n, s), Y.pos(n, s), rp, p, C);
    }
  });
}

void gate_apply(const Tensor& x, bool channels_last, const OptTensor& row, const OptTensor& pos, int64_t mode,
                const Tensor& out) {
  const Geometry g = geometry(x, channels_last);
  check_full(out, g, "out");
  TORCH_CHECK(out.scalar_type() == x.scalar_type(), "out: dtype must match x");
  const auto acc = acc_type(x);
  const bool needs_row = mode != kPos;
  const bool needs_pos = mode != kRow;
  TORCH_CHECK(row.has_value() == needs_row && pos.has_value() == needs_pos, "gate_apply: mode ", mode,
              " needs row=", needs_row, " pos=", needs_pos);
  if (row.has_value()) check_small(*row, acc, g.N * g.C, "row");
  if (pos.has_value()) check_small(*pos, acc, g.N * g.S, "pos");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gate_apply", [&] {
    switch (mode) {
      case kRow: gate_apply_kernel<scalar_t, kRow>(x, g, row, pos, out); break;
      case kPos: gate_apply_kernel<scalar_t, kPos>(x, g, row, pos, out); break;
      case kRowPos: gate_apply_kernel<scalar_t, kRowPos>(x, g, row, pos, out); break;
      case kMax: gate_apply_kernel<scalar_t, kMax>(x, g, row, pos, out); break;
      case kAdd: gate_apply_kernel<scalar_t, kAdd>(x, g, row, pos, out); break;
      case kMul: gate_apply_kernel<scalar_t, kMul>(x, g, row, pos, out); break;
      default: TORCH_CHECK(false, "gate_apply: unknown mode ", mode);
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// gate_grad_stats: the reductions of (grad, x) that the gate gradients need: per row (sum over
// positions) and/or per position (sum over channels). Modes and what they reduce:
//   row          row: g x                              (channel gates)
//   pos          pos: g x                              (sSE)
//   rowpos       pos: g round(x r)                     (CBAM's spatial gate, x' = x r)
//   max/add/mul  row and pos: the two branches of scSE

template <typename T, int MODE>
inline void gate_grad_terms(acc_t<T> gv, acc_t<T> v, acc_t<T> r, acc_t<T> p, acc_t<T>& to_row, acc_t<T>& to_pos) {
  using A = acc_t<T>;
  if constexpr (MODE == kRow || MODE == kPos || MODE == kAdd) {
    to_row = gv * v;
    to_pos = to_row;
  } else if constexpr (MODE == kRowPos) {
    to_row = A(0);
    to_pos = gv * round_to<T>(v * r);
  } else if constexpr (MODE == kMax) {
    const A a = round_to<T>(v * r);
    const A b = round_to<T>(v * p);
    const A share = (a > b ? A(1) : A(0)) + (a == b ? A(0.5) : A(0));  // torch.maximum splits ties evenly
    const A q = gv * v;
    to_row = q * share;
    to_pos = q - to_row;
  } else {
    to_row = gv * round_to<T>(v * p) * v;
    to_pos = gv * round_to<T>(v * r) * v;
  }
}

template <int MODE>
constexpr bool ggs_reads_row() {
  return MODE == kRowPos || MODE == kMax || MODE == kMul;
}

// NCS row: the row sum of to_row (positions vary), optionally accumulating to_pos per position.
template <typename T, int MODE, bool WANT_POS, typename A = acc_t<T>>
EXCITE_RUN A ggs_row_run(const T* EXCITE_R g, const T* EXCITE_R x, A r, const A* EXCITE_R p, A* EXCITE_R pos_acc,
              int64_t len) {
  A total = 0;
  EXCITE_SIMD_SUM(total)
  for (int64_t i = 0; i < len; ++i) {
    A to_row, to_pos;
    gate_grad_terms<T, MODE>(load(g + i), load(x + i), r, ggs_reads_row<MODE>() ? p[i] : A(0), to_row, to_pos);
    total += to_row;
    if (WANT_POS) pos_acc[i] += to_pos;
  }
  return total;
}

// NSC position: the sum of to_pos over channels, optionally accumulating to_row per channel.
template <typename T, int MODE, bool WANT_ROW, typename A = acc_t<T>>
EXCITE_RUN A ggs_pos_run(const T* EXCITE_R g, const T* EXCITE_R x, const A* EXCITE_R r, A p, A* EXCITE_R row_acc,
              int64_t len) {
  A total = 0;
  EXCITE_SIMD_SUM(total)
  for (int64_t i = 0; i < len; ++i) {
    A to_row, to_pos;
    gate_grad_terms<T, MODE>(load(g + i), load(x + i), ggs_reads_row<MODE>() ? r[i] : A(0), p, to_row, to_pos);
    total += to_pos;
    if (WANT_ROW) row_acc[i] += to_row;
  }
  return total;
}

template <typename T, int MODE, bool WANT_ROW, bool WANT_POS>
void gate_grad_stats_kernel(const Tensor& grad, const Tensor& x, const Geometry& g, const OptTensor& row,
                            const OptTensor& pos, Tensor& out_row, Tensor& out_pos) {
  using A = acc_t<T>;
  const View<T> G = view_of<T>(grad);
  const View<T> X = view_of<T>(x);
  const A* R = ptr_or_null<A>(row);
  const A* P = ptr_or_null<A>(pos);
  A* OR = WANT_ROW ? out_row.data_ptr<A>() : nullptr;
  A* OP = WANT_POS ? out_pos.data_ptr<A>() : nullptr;
  const int64_t C = g.C, S = g.S;
  constexpr bool kReadsRow = ggs_reads_row<MODE>();
  if (!WANT_POS && !g.cl) {
    {
      parallel_rows(g, [&](int64_t n, int64_t c) {
        const A r = kReadsRow ? R[n * C + c] : A(0);
        OR[n * C + c] = ggs_row_run<T, MODE, false>(G.row(n, c), X.row(n, c), r, kReadsRow ? P + n * S : nullptr,
                                                     static_cast<A*>(nullptr), S);
      });
    }
    return;
  }
  const TilePlan plan = tile_plan(g);
  std::vector<A> partial(WANT_ROW ? plan.tiles * C : 0);
  A* PR = partial.data();
  parallel_tiles(g, plan, [&](int64_t n, int64_t s0, int64_t s1, int64_t t) {
    const int64_t len = s1 - s0;
    if (!g.cl) {
      std::vector<A> pos_acc(len, A(0));
      const A* pp = kReadsRow ? P + n * S + s0 : nullptr;
      for (int64_t c = 0; c < C; ++c) {
        const A r = kReadsRow ? R[n * C + c] : A(0);
        const A total = ggs_row_run<T, MODE, true>(G.row(n, c) + s0, X.row(n, c) + s0, r, pp, pos_acc.data(), len);
        if (WANT_ROW) PR[t * C + c] = total;
      }
      if (WANT_POS) std::copy(pos_acc.begin(), pos_acc.end(), OP + n * S + s0);
    } else {
      A* pr = WANT_ROW ? PR + t * C : nullptr;
      if (WANT_ROW) std::fill(pr, pr + C, A(0));
      const A* rp = kReadsRow ? R + n * C : nullptr;
      for (int64_t s = s0; s < s1; ++s) {
        const A p = kReadsRow ? P[n * S + s] : A(0);
        const A total = ggs_pos_run<T, MODE, WANT_ROW>(G.pos(n, s), X.pos(n, s), rp, p, pr, C);
        if (WANT_POS) OP[n * S + s] = total;
      }
    }
  });
  if (WANT_ROW) reduce_tile_partials(g, plan, PR, OR);
}

template <typename T, int MODE>
void gate_grad_stats_dispatch(const Tensor& grad, const Tensor& x, const Geometry& g, const OptTensor& row,
                              const OptTensor& pos, bool want_row, bool want_pos, Tensor& out_row, Tensor& out_pos) {
  // Only the combinations the Python side uses are instantiated (compile time).
  if constexpr (MODE == kRow) {
    TORCH_CHECK(want_row && !want_pos, "gate_grad_stats: row mode reduces rows only");
    gate_grad_stats_kernel<T, MODE, true, false>(grad, x, g, row, pos, out_row, out_pos);
  } else if constexpr (MODE == kPos || MODE == kRowPos) {
    TORCH_CHECK(want_pos && !want_row, "gate_grad_stats: this mode reduces positions only");
    gate_grad_stats_kernel<T, MODE, false, true>(grad, x, g, row, pos, out_row, out_pos);
  } else {
    TORCH_CHECK(want_row && want_pos, "gate_grad_stats: this mode reduces rows and positions");
    gate_grad_stats_kernel<T, MODE, true, true>(grad, x, g, row, pos, out_row, out_pos);
  }
}

std::vector<Tensor> gate_grad_stats(const Tensor& grad, const Tensor& x, bool channels_last, const OptTensor& row,
                                    const OptTensor& pos, int64_t mode, bool want_row, bool want_pos) {
  const Geometry g = geometry(x, channels_last);
  check_full(grad, g, "grad");
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), "grad: dtype must match x");
  const auto acc = acc_type(x);
  if (row.has_value()) check_small(*row, acc, g.N * g.C, "row");
  if (pos.has_value()) check_small(*pos, acc, g.N * g.S, "pos");
  TORCH_CHECK(!(mode == kRowPos || mode == kMax || mode == kMul) || (row.has_value() && pos.has_value()),
              "gate_grad_stats: mode ", mode, " needs row and pos");
  auto opts = x.options().dtype(acc);
  Tensor out_row = want_row ? at::empty({g.N, g.C}, opts) : at::empty({0}, opts);
  Tensor out_pos = want_pos ? at::empty({g.N, g.S}, opts) : at::empty({0}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gate_grad_stats", [&] {
    switch (mode) {
      case kRow:
        gate_grad_stats_dispatch<scalar_t, kRow>(grad, x, g, row, pos, want_row, want_pos, out_row, out_pos);
        break;
      case kPos:
        gate_grad_stats_dispatch<scalar_t, kPos>(grad, x, g, row, pos, want_row, want_pos, out_row, out_pos);
        break;
      case kRowPos:
        gate_grad_stats_dispatch<scalar_t, kRowPos>(grad, x, g, row, pos, want_row, want_pos, out_row, out_pos);
        break;
      case kMax:
        gate_grad_stats_dispatch<scalar_t, kMax>(grad, x, g, row, pos, want_row, want_pos, out_row, out_pos);
        break;
      case kAdd:
        gate_grad_stats_dispatch<scalar_t, kAdd>(grad, x, g, row, pos, want_row, want_pos, out_row, out_pos);
        break;
      case kMul:
        gate_grad_stats_dispatch<scalar_t, kMul>(grad, x, g, row, pos, want_row, want_pos, out_row, out_pos);
        break;
      default: TORCH_CHECK(false, "gate_grad_stats: unknown mode ", mode);
    }
  });
  return {out_row, out_pos};
}

// ---------------------------------------------------------------------------------------------------
// gate_grad: dx = grad * d(gated)/dx + krow[n, c] * filter[c, s] (filter 1 when absent)
//               + kmax[n, c] * [x == xmax[n, c]] + kpos[n, s] * w[c]
// kmax is already divided by the tie count.

template <typename T, int MODE>
inline acc_t<T> gate_direct(acc_t<T> v, acc_t<T> r, acc_t<T> p) {
  using A = acc_t<T>;
  if constexpr (MODE == kRow) {
    return r;
  } else if constexpr (MODE == kPos) {
    return p;
  } else if constexpr (MODE == kMax) {
    const A a = round_to<T>(v * r);
    const A b = round_to<T>(v * p);
    const A share = (a > b ? A(1) : A(0)) + (a == b ? A(0.5) : A(0));
    return share * r + (A(1) - share) * p;
  } else if constexpr (MODE == kAdd) {
    return r + p;
  } else {
    return round_to<T>(v * p) * r + round_to<T>(v * r) * p;
  }
}

template <int MODE, bool KMAX>
constexpr bool gg_reads_x() {
  return KMAX || MODE == kMax || MODE == kMul;
}

// NCS row run: r, kr, km, xm, w are per-row scalars; p, kp, f vary with the position.
template <typename T, int MODE, bool FILTER, bool KMAX, bool KPOS, typename A = acc_t<T>>
EXCITE_RUN void gg_row_run(const T* EXCITE_R g, const T* EXCITE_R x, T* EXCITE_R y, A r, const A* EXCITE_R p, A kr,
                const A* EXCITE_R f, A km, A xm, const A* EXCITE_R kp, A w, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = gg_reads_x<MODE, KMAX>() ? load(x + i) : A(0);
    A d = load(g + i) * gate_direct<T, MODE>(v, r, uses_pos<MODE>() ? p[i] : A(0));
    d += FILTER ? kr * f[i] : kr;
    if (KMAX) d += v == xm ? km : A(0);
    if (KPOS) d += kp[i] * w;
    store(y + i, d);
  }
}

// NSC position run: p, kp are per-position scalars; r, kr, f, km, xm, w vary with the channel.
template <typename T, int MODE, bool FILTER, bool KMAX, bool KPOS, typename A = acc_t<T>>
EXCITE_RUN void gg_pos_run(const T* EXCITE_R g, const T* EXCITE_R x, T* EXCITE_R y, const A* EXCITE_R r, A p,
                const A* EXCITE_R kr, const A* EXCITE_R f, const A* EXCITE_R km, const A* EXCITE_R xm, A kp,
                const A* EXCITE_R w, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = gg_reads_x<MODE, KMAX>() ? load(x + i) : A(0);
    A d = load(g + i) * gate_direct<T, MODE>(v, uses_row<MODE>() ? r[i] : A(0), p);
    d += FILTER ? kr[i] * f[i] : kr[i];
    if (KMAX) {
      const A k = km[i];
      d += v == xm[i] ? k : A(0);
    }
    if (KPOS) d += kp * w[i];
    store(y + i, d);
  }
}

template <typename T, int MODE, bool FILTER, bool KMAX, bool KPOS>
void gate_grad_kernel(const Tensor& grad, const Tensor& x, const Geometry& g, const OptTensor& row,
                      const OptTensor& pos, const OptTensor& krow, const OptTensor& filter, const OptTensor& kmax,
                      const OptTensor& xmax, const OptTensor& kpos, const OptTensor& weight, const Tensor& out) {
  using A = acc_t<T>;
  constexpr bool kReadsX = gg_reads_x<MODE, KMAX>();
  const View<T> G = view_of<T>(grad);
  const View<T> X = kReadsX ? view_of<T>(x) : no_view<T>();
  const View<T> Y = view_of<T>(out);
  const A* R = ptr_or_null<A>(row);
  const A* P = ptr_or_null<A>(pos);
  const int64_t C = g.C, S = g.S;
  std::vector<A> zeros(krow.has_value() ? 0 : g.N * C, A(0));  // an absent krow contributes nothing
  const A* KR = krow.has_value() ? krow->data_ptr<A>() : zeros.data();
  const A* F = FILTER ? filter->data_ptr<A>() : nullptr;
  const int64_t fC = FILTER ? filter->stride(0) : 0;  // NCS: row stride; NSC: unit
  const int64_t fS = FILTER ? filter->stride(1) : 0;  // NSC: position stride; NCS: unit
  const A* KM = KMAX ? kmax->data_ptr<A>() : nullptr;
  const A* XM = KMAX ? xmax->data_ptr<A>() : nullptr;
  const A* KP = KPOS ? kpos->data_ptr<A>() : nullptr;
  const A* W = KPOS ? weight->data_ptr<A>() : nullptr;
  if (!g.cl) {
    parallel_rows(g, [&](int64_t n, int64_t c) {
      const int64_t rc = n * C + c;
      gg_row_run<T, MODE, FILTER, KMAX, KPOS>(
          G.row(n, c), kReadsX ? X.row(n, c) : nullptr, Y.row(n, c), uses_row<MODE>() ? R[rc] : A(0),
          uses_pos<MODE>() ? P + n * S : nullptr, KR[rc], FILTER ? F + c * fC : nullptr, KMAX ? KM[rc] : A(0),
          KMAX ? XM[rc] : A(0), KPOS ? KP + n * S : nullptr, KPOS ? W[c] : A(0), S);
    }, FILTER);
    return;
  }
  parallel_tiles(g, tile_plan(g), [&](int64_t n, int64_t s0, int64_t s1, int64_t) {
    for (int64_t s = s0; s < s1; ++s) {
      gg_pos_run<T, MODE, FILTER, KMAX, KPOS>(
          G.pos(n, s), kReadsX ? X.pos(n, s) : nullptr, Y.pos(n, s), uses_row<MODE>() ? R + n * C : nullptr,
          uses_pos<MODE>() ? P[n * S + s] : A(0), KR + n * C, FILTER ? F + s * fS : nullptr,
          KMAX ? KM + n * C : nullptr, KMAX ? XM + n * C : nullptr, KPOS ? KP[n * S + s] : A(0), W, C);
    }
  }, FILTER);
}

void gate_grad(const Tensor& grad, const Tensor& x, bool channels_last, const OptTensor& row, const OptTensor& pos,
               int64_t mode, const OptTensor& krow, const OptTensor& filter, const OptTensor& kmax,
               const OptTensor& xmax, const OptTensor& kpos, const OptTensor& weight, const Tensor& out) {
  const Geometry g = geometry(x, channels_last);
  check_full(grad, g, "grad");
  check_full(out, g, "out");
  const auto acc = acc_type(x);
  if (row.has_value()) check_small(*row, acc, g.N * g.C, "row");
  if (pos.has_value()) check_small(*pos, acc, g.N * g.S, "pos");
  TORCH_CHECK(row.has_value() == (mode != kPos) && pos.has_value() == (mode != kRow), "gate_grad: mode ", mode,
              " got the wrong gates");
  if (krow.has_value()) check_small(*krow, acc, g.N * g.C, "krow");
  if (kmax.has_value()) {
    check_small(*kmax, acc, g.N * g.C, "kmax");
    TORCH_CHECK(xmax.has_value(), "gate_grad: kmax needs xmax");
    check_small(*xmax, acc, g.N * g.C, "xmax");
  }
  if (kpos.has_value()) {
    check_small(*kpos, acc, g.N * g.S, "kpos");
    TORCH_CHECK(weight.has_value(), "gate_grad: kpos needs weight");
    check_small(*weight, acc, g.C, "weight");
  }
  if (filter.has_value()) {
    check_filter(*filter, g, acc);
    TORCH_CHECK(krow.has_value(), "gate_grad: a filter needs krow");
  }
  const bool f = filter.has_value();
  const bool km = kmax.has_value();
  const bool kp = kpos.has_value();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gate_grad", [&] {
    auto run = [&](auto mode_c, auto filter_c, auto kmax_c, auto kpos_c) {
      gate_grad_kernel<scalar_t, decltype(mode_c)::value, decltype(filter_c)::value, decltype(kmax_c)::value,
                       decltype(kpos_c)::value>(grad, x, g, row, pos, krow, filter, kmax, xmax, kpos, weight, out);
    };
    using Yes = std::true_type;
    using No = std::false_type;
    using RowM = std::integral_constant<int, kRow>;
    if (mode == kRow && !km && !kp) {
      if (f) {
        run(RowM{}, Yes{}, No{}, No{});
      } else {
        run(RowM{}, No{}, No{}, No{});
      }
    } else if (mode == kRow && km && !f && !kp) {
      run(RowM{}, No{}, Yes{}, No{});
    } else if (!f && !km && kp && mode == kPos) {
      run(std::integral_constant<int, kPos>{}, No{}, No{}, Yes{});
    } else if (!f && !km && kp && mode == kMax) {
      run(std::integral_constant<int, kMax>{}, No{}, No{}, Yes{});
    } else if (!f && !km && kp && mode == kAdd) {
      run(std::integral_constant<int, kAdd>{}, No{}, No{}, Yes{});
    } else if (!f && !km && kp && mode == kMul) {
      run(std::integral_constant<int, kMul>{}, No{}, No{}, Yes{});
    } else {
      TORCH_CHECK(false, "gate_grad: unsupported combination mode=", mode, " filter=", f, " kmax=", km, " kpos=", kp);
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// filter_grad: dfilter[c, s] = sum_n krow[n, c] x[n, c, s]; weight_grad: dw[c] = sum_{n,s} kpos[n, s] x[n, c, s].

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void product_accumulate_run(const T* EXCITE_R x, const A* EXCITE_R k, A* EXCITE_R acc, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) acc[i] += k[i] * load(x + i);
}

template <typename T>
void filter_grad_kernel(const Tensor& x, const Geometry& g, const Tensor& krow, const Tensor& out) {
  using A = acc_t<T>;
  const View<T> X = view_of<T>(x);
  const A* KR = krow.data_ptr<A>();
  A* O = out.data_ptr<A>();  // NCS: (C, S) contiguous; NSC: (S, C) contiguous
  const int64_t N = g.N, C = g.C, S = g.S;
  if (!g.cl) {
    at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        A* o = O + c * S;
        std::fill(o, o + S, A(0));
        for (int64_t n = 0; n < N; ++n) scaled_accumulate_run(X.row(n, c), KR[n * C + c], o, S);
      }
    });
    return;
  }
  const int64_t block = 16;
  at::parallel_for(0, (S + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t s0 = b * block;
      const int64_t s1 = std::min(S, s0 + block);
      std::fill(O + s0 * C, O + s1 * C, A(0));
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t s = s0; s < s1; ++s) product_accumulate_run(X.pos(n, s), KR + n * C, O + s * C, C);
      }
    }
  });
}

Tensor filter_grad(const Tensor& x, bool channels_last, const Tensor& krow) {
  const Geometry g = geometry(x, channels_last);
  const auto acc = acc_type(x);
  check_small(krow, acc, g.N * g.C, "krow");
  auto opts = x.options().dtype(acc);
  Tensor out = g.cl ? at::empty({g.S, g.C}, opts) : at::empty({g.C, g.S}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "filter_grad",
                                  [&] { filter_grad_kernel<scalar_t>(x, g, krow, out); });
  return g.cl ? out.t() : out;
}

template <typename T>
void weight_grad_kernel(const Tensor& x, const Geometry& g, const Tensor& kpos, const Tensor& out) {
  using A = acc_t<T>;
  const View<T> X = view_of<T>(x);
  const A* KP = kpos.data_ptr<A>();
  A* O = out.data_ptr<A>();
  const int64_t N = g.N, C = g.C, S = g.S;
  std::fill(O, O + C, A(0));
  if (!g.cl) {
    std::vector<A> partial(N * C);
    A* PR = partial.data();
    parallel_rows(g, [&](int64_t n, int64_t c) { PR[n * C + c] = weighted_sum_run(X.row(n, c), KP + n * S, S); });
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) O[c] += PR[n * C + c];
    }
    return;
  }
  const TilePlan plan = tile_plan(g);
  std::vector<A> partial(plan.tiles * C);
  A* PR = partial.data();
  parallel_tiles(g, plan, [&](int64_t n, int64_t s0, int64_t s1, int64_t t) {
    A* pr = PR + t * C;
    std::fill(pr, pr + C, A(0));
    for (int64_t s = s0; s < s1; ++s) scaled_accumulate_run(X.pos(n, s), KP[n * S + s], pr, C);
  });
  for (int64_t t = 0; t < plan.tiles; ++t) {
    for (int64_t c = 0; c < C; ++c) O[c] += PR[t * C + c];
  }
}

Tensor weight_grad(const Tensor& x, bool channels_last, const Tensor& kpos) {
  const Geometry g = geometry(x, channels_last);
  const auto acc = acc_type(x);
  check_small(kpos, acc, g.N * g.S, "kpos");
  Tensor out = at::empty({g.C}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "weight_grad",
                                  [&] { weight_grad_kernel<scalar_t>(x, g, kpos, out); });
  return out;
}

// ---------------------------------------------------------------------------------------------------
// position_stats: reductions across channels at each position, in one pass:
//   wsum[n, s]            = sum_c w[c] x                      (sSE's 1x1 conv, if weight is given)
//   rowsum[n, c]          = sum_s x                            (cSE's pool, riding along for scSE)
//   pmax, pcount, psum    = max / ties / sum over c of round(x * rowscale[n, c])   (CBAM's spatial pools)

// NCS: one channel's row segment; per-position accumulators vary with i.
template <typename T, bool W, bool ROWSUM, bool MAXMEAN, typename A = acc_t<T>>
EXCITE_RUN A ps_row_run(const T* EXCITE_R x, A w, A rs, A* EXCITE_R wa, A* EXCITE_R ma, A* EXCITE_R ka, A* EXCITE_R sa,
             int64_t len) {
  A total = 0;
  EXCITE_SIMD_SUM(total)
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    if (W) wa[i] += w * v;
    if (ROWSUM) total += v;
    if (MAXMEAN) {
      const A q = round_to<T>(v * rs);
      max_update(q, ma[i], ka[i]);
      sa[i] += q;
    }
  }
  return total;
}

// NSC: one position; reductions over channels (lanes keep max/ties vectorisable).
template <typename T, bool W, bool ROWSUM, bool MAXMEAN, typename A = acc_t<T>>
EXCITE_RUN void ps_pos_run(const T* EXCITE_R x, const A* EXCITE_R w, const A* EXCITE_R rs, A* EXCITE_R row_acc, int64_t len,
                A& wsum, A& top, A& ties, A& qsum) {
  constexpr int L = 16;
  A wl[L], sl[L], m[L], k[L];
  for (int l = 0; l < L; ++l) {
    wl[l] = 0;
    sl[l] = 0;
    m[l] = -std::numeric_limits<A>::infinity();
    k[l] = 0;
  }
  int64_t i = 0;
  for (; i + L <= len; i += L) {
    for (int l = 0; l < L; ++l) {
      const A v = load(x + i + l);
      if (W) wl[l] += w[i + l] * v;
      if (ROWSUM) row_acc[i + l] += v;
      if (MAXMEAN) {
        const A q = round_to<T>(v * rs[i + l]);
        max_update(q, m[l], k[l]);
        sl[l] += q;
      }
    }
  }
  for (; i < len; ++i) {
    const A v = load(x + i);
    if (W) wl[0] += w[i] * v;
    if (ROWSUM) row_acc[i] += v;
    if (MAXMEAN) {
      const A q = round_to<T>(v * rs[i]);
      max_update(q, m[0], k[0]);
      sl[0] += q;
    }
  }
  A ws = 0, ss = 0, best = -std::numeric_limits<A>::infinity(), count = 0;
  for (int l = 0; l < L; ++l) {
    ws += wl[l];
    ss += sl[l];
    best = std::max(best, m[l]);
  }
  for (int l = 0; l < L; ++l) count += m[l] == best ? k[l] : A(0);
  wsum = ws;
  qsum = ss;
  top = best;
  ties = count;
}

template <typename T, bool W, bool ROWSUM, bool MAXMEAN>
void position_stats_kernel(const Tensor& x, const Geometry& g, const OptTensor& weight, const OptTensor& rowscale,
                           Tensor& wsum, Tensor& rowsum, Tensor& pmax, Tensor& pcount, Tensor& psum) {
  using A = acc_t<T>;
  const View<T> X = view_of<T>(x);
  const A* WC = W ? weight->data_ptr<A>() : nullptr;
  const A* RS = MAXMEAN ? rowscale->data_ptr<A>() : nullptr;
  A* OW = W ? wsum.data_ptr<A>() : nullptr;
  A* OR = ROWSUM ? rowsum.data_ptr<A>() : nullptr;
  A* OM = MAXMEAN ? pmax.data_ptr<A>() : nullptr;
  A* OK = MAXMEAN ? pcount.data_ptr<A>() : nullptr;
  A* OS = MAXMEAN ? psum.data_ptr<A>() : nullptr;
  const int64_t C = g.C, S = g.S;
  const TilePlan plan = tile_plan(g);
  std::vector<A> partial(ROWSUM ? plan.tiles * C : 0);
  A* PR = partial.data();
  parallel_tiles(g, plan, [&](int64_t n, int64_t s0, int64_t s1, int64_t t) {
    const int64_t len = s1 - s0;
    if (!g.cl) {
      std::vector<A> buffer(4 * len);
      A* wa = buffer.data();
      A* ma = wa + len;
      A* ka = ma + len;
      A* sa = ka + len;
      std::fill(wa, wa + len, A(0));
      std::fill(ma, ma + len, -std::numeric_limits<A>::infinity());
      std::fill(ka, ka + len, A(0));
      std::fill(sa, sa + len, A(0));
      for (int64_t c = 0; c < C; ++c) {
        const A total = ps_row_run<T, W, ROWSUM, MAXMEAN>(X.row(n, c) + s0, W ? WC[c] : A(0),
                                                          MAXMEAN ? RS[n * C + c] : A(0), wa, ma, ka, sa, len);
        if (ROWSUM) PR[t * C + c] = total;
      }
      if (W) std::copy(wa, wa + len, OW + n * S + s0);
      if (MAXMEAN) {
        std::copy(ma, ma + len, OM + n * S + s0);
        std::copy(ka, ka + len, OK + n * S + s0);
        std::copy(sa, sa + len, OS + n * S + s0);
      }
    } else {
      A* pr = ROWSUM ? PR + t * C : nullptr;
      if (ROWSUM) std::fill(pr, pr + C, A(0));
      const A* rs = MAXMEAN ? RS + n * C : nullptr;
      for (int64_t s = s0; s < s1; ++s) {
        A ws, top, ties, qs;
        ps_pos_run<T, W, ROWSUM, MAXMEAN>(X.pos(n, s), WC, rs, pr, C, ws, top, ties, qs);
        if (W) OW[n * S + s] = ws;
        if (MAXMEAN) {
          OM[n * S + s] = top;
          OK[n * S + s] = ties;
          OS[n * S + s] = qs;
        }
      }
    }
  });
  if (ROWSUM) reduce_tile_partials(g, plan, PR, OR);
}

std::vector<Tensor> position_stats(const Tensor& x, bool channels_last, const OptTensor& weight,
                                   const OptTensor& rowscale, bool want_rowsum) {
  const Geometry g = geometry(x, channels_last);
  const auto acc = acc_type(x);
  auto opts = x.options().dtype(acc);
  const bool w = weight.has_value();
  const bool maxmean = rowscale.has_value();
  if (w) check_small(*weight, acc, g.C, "weight");
  if (maxmean) check_small(*rowscale, acc, g.N * g.C, "rowscale");
  Tensor empty = at::empty({0}, opts);
  Tensor wsum = w ? at::empty({g.N, g.S}, opts) : empty;
  Tensor rowsum = want_rowsum ? at::empty({g.N, g.C}, opts) : empty;
  Tensor pmax = maxmean ? at::empty({g.N, g.S}, opts) : empty;
  Tensor pcount = maxmean ? at::empty({g.N, g.S}, opts) : empty;
  Tensor psum = maxmean ? at::empty({g.N, g.S}, opts) : empty;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "position_stats", [&] {
    if (w && !want_rowsum && !maxmean) {
      position_stats_kernel<scalar_t, true, false, false>(x, g, weight, rowscale, wsum, rowsum, pmax, pcount, psum);
    } else if (w && want_rowsum && !maxmean) {
      position_stats_kernel<scalar_t, true, true, false>(x, g, weight, rowscale, wsum, rowsum, pmax, pcount, psum);
    } else if (!w && !want_rowsum && maxmean) {
      position_stats_kernel<scalar_t, false, false, true>(x, g, weight, rowscale, wsum, rowsum, pmax, pcount, psum);
    } else {
      TORCH_CHECK(false, "position_stats: unsupported combination weight=", w, " rowsum=", want_rowsum,
                  " maxmean=", maxmean);
    }
  });
  return {wsum, rowsum, pmax, pcount, psum};
}

// ---------------------------------------------------------------------------------------------------
// SimAM. With t = x - mean[n, c], a = 1 / (4 (v + lambda)) and sig = sigmoid(a t^2 + 1/2):
//   forward       y = x * sig
//   grad stats    A = sum_s h t,  B = sum_s h t^2,  h = g x sig (1 - sig)
//   grad          dx = g sig + 2 a h t + k1 + k2 t    (k1, k2 per row, from A and B)

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void simam_forward_row(const T* EXCITE_R x, T* EXCITE_R y, A mu, A a, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A t = v - mu;
    store(y + i, v * sigmoid_nonnegative(a * t * t + A(0.5)));
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void simam_forward_pos(const T* EXCITE_R x, T* EXCITE_R y, const A* EXCITE_R mu, const A* EXCITE_R a, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A t = v - mu[i];
    store(y + i, v * sigmoid_nonnegative(a[i] * t * t + A(0.5)));
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void simam_stats_row(const T* EXCITE_R g, const T* EXCITE_R x, A mu, A a, int64_t len, A& out_a, A& out_b) {
  A sa = 0, sb = 0;
  EXCITE_SIMD_SUM(sa, sb)
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A t = v - mu;
    const A sig = sigmoid_nonnegative(a * t * t + A(0.5));
    const A ht = load(g + i) * v * sig * (A(1) - sig) * t;
    sa += ht;
    sb += ht * t;
  }
  out_a = sa;
  out_b = sb;
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void simam_stats_pos(const T* EXCITE_R g, const T* EXCITE_R x, const A* EXCITE_R mu, const A* EXCITE_R a,
                     A* EXCITE_R sa, A* EXCITE_R sb, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A t = v - mu[i];
    const A sig = sigmoid_nonnegative(a[i] * t * t + A(0.5));
    const A ht = load(g + i) * v * sig * (A(1) - sig) * t;
    sa[i] += ht;
    sb[i] += ht * t;
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void simam_grad_row(const T* EXCITE_R g, const T* EXCITE_R x, T* EXCITE_R y, A mu, A a, A k1, A k2, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A gv = load(g + i);
    const A t = v - mu;
    const A sig = sigmoid_nonnegative(a * t * t + A(0.5));
    const A h = gv * v * sig * (A(1) - sig);
    store(y + i, gv * sig + A(2) * a * h * t + k1 + k2 * t);
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void simam_grad_pos(const T* EXCITE_R g, const T* EXCITE_R x, T* EXCITE_R y, const A* EXCITE_R mu,
                    const A* EXCITE_R a, const A* EXCITE_R k1, const A* EXCITE_R k2, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A gv = load(g + i);
    const A t = v - mu[i];
    const A sig = sigmoid_nonnegative(a[i] * t * t + A(0.5));
    const A h = gv * v * sig * (A(1) - sig);
    store(y + i, gv * sig + A(2) * a[i] * h * t + k1[i] + k2[i] * t);
  }
}

void check_simam(const Geometry& g, at::ScalarType acc, std::initializer_list<const Tensor*> rows) {
  for (const Tensor* t : rows) check_small(*t, acc, g.N * g.C, "simam row statistic");
}

void simam_forward(const Tensor& x, bool channels_last, const Tensor& mean, const Tensor& a, const Tensor& out) {
  const Geometry g = geometry(x, channels_last);
  check_full(out, g, "out");
  check_simam(g, acc_type(x), {&mean, &a});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "simam_forward", [&] {
    using A = acc_t<scalar_t>;
    const View<scalar_t> X = view_of<scalar_t>(x);
    const View<scalar_t> Y = view_of<scalar_t>(out);
    const A* MU = mean.data_ptr<A>();
    const A* AA = a.data_ptr<A>();
    const int64_t C = g.C, S = g.S;
    if (!g.cl) {
      parallel_rows(g, [&](int64_t n, int64_t c) {
        simam_forward_row(X.row(n, c), Y.row(n, c), MU[n * C + c], AA[n * C + c], S);
      });
    } else {
      parallel_tiles(g, tile_plan(g), [&](int64_t n, int64_t s0, int64_t s1, int64_t) {
        for (int64_t s = s0; s < s1; ++s) simam_forward_pos(X.pos(n, s), Y.pos(n, s), MU + n * C, AA + n * C, C);
      });
    }
  });
}

std::vector<Tensor> simam_grad_stats(const Tensor& grad, const Tensor& x, bool channels_last, const Tensor& mean,
                                     const Tensor& a) {
  const Geometry g = geometry(x, channels_last);
  check_full(grad, g, "grad");
  const auto acc = acc_type(x);
  check_simam(g, acc, {&mean, &a});
  auto opts = x.options().dtype(acc);
  Tensor out_a = at::empty({g.N, g.C}, opts);
  Tensor out_b = at::empty({g.N, g.C}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "simam_grad_stats", [&] {
    using A = acc_t<scalar_t>;
    const View<scalar_t> X = view_of<scalar_t>(x);
    const View<scalar_t> G = view_of<scalar_t>(grad);
    const A* MU = mean.data_ptr<A>();
    const A* AA = a.data_ptr<A>();
    A* OA = out_a.data_ptr<A>();
    A* OB = out_b.data_ptr<A>();
    const int64_t C = g.C, S = g.S;
    if (!g.cl) {
      parallel_rows(g, [&](int64_t n, int64_t c) {
        const int64_t r = n * C + c;
        simam_stats_row(G.row(n, c), X.row(n, c), MU[r], AA[r], S, OA[r], OB[r]);
      });
    } else {
      const TilePlan plan = tile_plan(g);
      std::vector<A> partial(2 * plan.tiles * C, A(0));
      A* PA = partial.data();
      A* PB = PA + plan.tiles * C;
      parallel_tiles(g, plan, [&](int64_t n, int64_t s0, int64_t s1, int64_t t) {
        for (int64_t s = s0; s < s1; ++s) {
          simam_stats_pos(G.pos(n, s), X.pos(n, s), MU + n * C, AA + n * C, PA + t * C, PB + t * C, C);
        }
      });
      reduce_tile_partials(g, plan, PA, OA);
      reduce_tile_partials(g, plan, PB, OB);
    }
  });
  return {out_a, out_b};
}

void simam_grad(const Tensor& grad, const Tensor& x, bool channels_last, const Tensor& mean, const Tensor& a,
                const Tensor& k1, const Tensor& k2, const Tensor& out) {
  const Geometry g = geometry(x, channels_last);
  check_full(grad, g, "grad");
  check_full(out, g, "out");
  check_simam(g, acc_type(x), {&mean, &a, &k1, &k2});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "simam_grad", [&] {
    using A = acc_t<scalar_t>;
    const View<scalar_t> X = view_of<scalar_t>(x);
    const View<scalar_t> G = view_of<scalar_t>(grad);
    const View<scalar_t> Y = view_of<scalar_t>(out);
    const A* MU = mean.data_ptr<A>();
    const A* AA = a.data_ptr<A>();
    const A* K1 = k1.data_ptr<A>();
    const A* K2 = k2.data_ptr<A>();
    const int64_t C = g.C, S = g.S;
    if (!g.cl) {
      parallel_rows(g, [&](int64_t n, int64_t c) {
        const int64_t r = n * C + c;
        simam_grad_row(G.row(n, c), X.row(n, c), Y.row(n, c), MU[r], AA[r], K1[r], K2[r], S);
      });
    } else {
      parallel_tiles(g, tile_plan(g), [&](int64_t n, int64_t s0, int64_t s1, int64_t) {
        const int64_t r0 = n * C;
        for (int64_t s = s0; s < s1; ++s) {
          simam_grad_pos(G.pos(n, s), X.pos(n, s), Y.pos(n, s), MU + r0, AA + r0, K1 + r0, K2 + r0, C);
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Coordinate Attention, positions s = (d, h, w) over sizes (D, H, W) (2-D inputs use D = 1).
// Per-axis tensors ("strips") are [N, C, L] with unit stride along L (NCS) or along C (NSC).
//   axis_sums        sd[d] = sum_{h,w} x, sh[h] = sum_{d,w} x, sw[w] = sum_{d,h} x
//   axis_apply       y = round(round(round(x gw[w]) gh[h]) gd[d])   (the reference's order: W, H, D)
//   axis_grad_stats  dgd[d] = sum_{h,w} g x gh gw, dgh[h] = sum_{d,w} g x gd gw, dgw[w] = sum_{d,h} g x gd gh
//   axis_grad        dx = g gd gh gw + kd[d] + kh[h] + kw[w]

Tensor new_strip(const Geometry& g, int64_t length, const at::TensorOptions& opts) {
  if (!g.cl) return at::empty({g.N, g.C, length}, opts);
  return at::empty({g.N, length, g.C}, opts).transpose(1, 2);
}

void check_strip(const Tensor& t, const Geometry& g, int64_t length, at::ScalarType acc, const char* what) {
  TORCH_CHECK(t.dim() == 3 && t.size(0) == g.N && t.size(1) == g.C && t.size(2) == length && t.scalar_type() == acc,
              what, ": expected an [N, C, ", length, "] strip in the accumulation dtype, got ", t.sizes());
  const bool ok = g.cl ? ((g.C == 1 || t.stride(1) == 1) && (length == 1 || t.stride(2) == g.C) &&
                          (g.N == 1 || t.stride(0) == g.C * length))
                       : ((length == 1 || t.stride(2) == 1) && (g.C == 1 || t.stride(1) == length) &&
                          (g.N == 1 || t.stride(0) == g.C * length));
  TORCH_CHECK(ok, what, ": strip strides ", t.strides(), " do not match the layout");
}

// Lines shorter than one 512-bit vector of floats take scalar loops (see axis_sum_plane).
constexpr int64_t kShortLine = 16;

// NCS plane runs: the D*H lines of one (n, c) row, each W long, with per-line values in arrays (one
// call per row: a call per 56-wide line would cost as much as the line).
template <typename T, typename A = acc_t<T>>
EXCITE_RUN void axis_sum_plane(const T* EXCITE_R x, A* EXCITE_R sw, A* EXCITE_R lines, int64_t count, int64_t len) {
  if (len < kShortLine) {
    // A vector reduction per line of 7 or 14 costs more than the line; plain adds pipeline instead.
    for (int64_t l = 0; l < count; ++l) {
      const T* xl = x + l * len;
      A line = 0;
      for (int64_t i = 0; i < len; ++i) {
        const A v = load(xl + i);
        sw[i] += v;
        line += v;
      }
      lines[l] = line;
    }
    return;
  }
  for (int64_t l = 0; l < count; ++l) {
    const T* xl = x + l * len;
    A line = 0;
    EXCITE_SIMD_SUM(line)
    for (int64_t i = 0; i < len; ++i) {
      const A v = load(xl + i);
      sw[i] += v;
      line += v;
    }
    lines[l] = line;
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void axis_apply_plane(const T* EXCITE_R x, T* EXCITE_R y, const A* EXCITE_R gw, const A* EXCITE_R gh,
                                 const A* EXCITE_R gd, int64_t count, int64_t len) {
  if (len < kShortLine) {
    for (int64_t l = 0; l < count; ++l) {
      const T* xl = x + l * len;
      T* yl = y + l * len;
      const A h = gh[l], d = gd[l];
      for (int64_t i = 0; i < len; ++i) {
        const A v = round_to<T>(round_to<T>(load(xl + i) * gw[i]) * h);
        store(yl + i, v * d);
      }
    }
    return;
  }
  for (int64_t l = 0; l < count; ++l) {
    const T* xl = x + l * len;
    T* yl = y + l * len;
    const A h = gh[l], d = gd[l];
    EXCITE_SIMD
    for (int64_t i = 0; i < len; ++i) {
      const A v = round_to<T>(round_to<T>(load(xl + i) * gw[i]) * h);
      store(yl + i, v * d);
    }
  }
}

// q = g x for a block of lines of one (n, c) row, into an L1-resident buffer. Reading g and x in the
// same loop that accumulates the per-column sums ran at well under half the bandwidth of a plain
// two-stream read on x86 (the per-column stores interleave with two input streams); a plain product
// loop streams at full speed and the reductions (axis_stats_products) then read the buffer from L1.
template <typename T, typename A = acc_t<T>>
EXCITE_RUN void product_run(const T* EXCITE_R g, const T* EXCITE_R x, A* EXCITE_R q, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) q[i] = load(g + i) * load(x + i);
}

// Four lines per sweep: four independent line sums in flight (each ends in a horizontal reduction
// whose latency a single 7-56-wide line cannot hide) and one load and store of dw per four products.
template <typename A>
EXCITE_RUN void axis_stats_products(const A* EXCITE_R q, const A* EXCITE_R gw, const A* EXCITE_R hd, A* EXCITE_R dw,
                                    A* EXCITE_R lines, int64_t count, int64_t len) {
  if (len < kShortLine) {
    for (int64_t l = 0; l < count; ++l) {
      const A* ql = q + l * len;
      const A k = hd[l];
      A line = 0;
      for (int64_t i = 0; i < len; ++i) {
        dw[i] += ql[i] * k;
        line += ql[i] * gw[i];
      }
      lines[l] = line;
    }
    return;
  }
  int64_t l = 0;
  for (; l + 4 <= count; l += 4) {
    const A* q0 = q + l * len;
    const A* q1 = q0 + len;
    const A* q2 = q1 + len;
    const A* q3 = q2 + len;
    const A k0 = hd[l], k1 = hd[l + 1], k2 = hd[l + 2], k3 = hd[l + 3];
    A line0 = 0, line1 = 0, line2 = 0, line3 = 0;
    EXCITE_SIMD_SUM(line0, line1, line2, line3)
    for (int64_t i = 0; i < len; ++i) {
      dw[i] += (q0[i] * k0 + q1[i] * k1) + (q2[i] * k2 + q3[i] * k3);
      line0 += q0[i] * gw[i];
      line1 += q1[i] * gw[i];
      line2 += q2[i] * gw[i];
      line3 += q3[i] * gw[i];
    }
    lines[l] = line0;
    lines[l + 1] = line1;
    lines[l + 2] = line2;
    lines[l + 3] = line3;
  }
  for (; l < count; ++l) {
    const A* ql = q + l * len;
    const A k = hd[l];
    A line = 0;
    EXCITE_SIMD_SUM(line)
    for (int64_t i = 0; i < len; ++i) {
      dw[i] += ql[i] * k;
      line += ql[i] * gw[i];
    }
    lines[l] = line;
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void axis_grad_plane(const T* EXCITE_R g, T* EXCITE_R y, const A* EXCITE_R gw, const A* EXCITE_R hd,
                                const A* EXCITE_R k, const A* EXCITE_R kw, int64_t count, int64_t len) {
  if (len < kShortLine) {
    for (int64_t l = 0; l < count; ++l) {
      const T* gl = g + l * len;
      T* yl = y + l * len;
      const A scale = hd[l], shift = k[l];
      for (int64_t i = 0; i < len; ++i) store(yl + i, load(gl + i) * gw[i] * scale + shift + kw[i]);
    }
    return;
  }
  for (int64_t l = 0; l < count; ++l) {
    const T* gl = g + l * len;
    T* yl = y + l * len;
    const A scale = hd[l], shift = k[l];
    EXCITE_SIMD
    for (int64_t i = 0; i < len; ++i) store(yl + i, load(gl + i) * gw[i] * scale + shift + kw[i]);
  }
}

// NSC position runs along a block of channels for one (n, d, h, w).
template <typename T, typename A = acc_t<T>>
EXCITE_RUN void axis_sum_pos(const T* EXCITE_R x, A* EXCITE_R sw, A* EXCITE_R line, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    sw[i] += v;
    line[i] += v;
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void axis_apply_pos(const T* EXCITE_R x, T* EXCITE_R y, const A* EXCITE_R gw, const A* EXCITE_R gh,
                    const A* EXCITE_R gd, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = round_to<T>(round_to<T>(load(x + i) * gw[i]) * gh[i]);
    store(y + i, v * gd[i]);
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void axis_stats_pos(const T* EXCITE_R g, const T* EXCITE_R x, const A* EXCITE_R gw, const A* EXCITE_R hd,
                    A* EXCITE_R dw, A* EXCITE_R line, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A q = load(g + i) * load(x + i);
    dw[i] += q * hd[i];
    line[i] += q * gw[i];
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void axis_grad_pos(const T* EXCITE_R g, T* EXCITE_R y, const A* EXCITE_R gw, const A* EXCITE_R gh,
                              const A* EXCITE_R gd, const A* EXCITE_R kw, const A* EXCITE_R kh,
                              const A* EXCITE_R kd, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) store(y + i, load(g + i) * gw[i] * gh[i] * gd[i] + kw[i] + kh[i] + kd[i]);
}

template <typename T, int PHASE>  // 0 sums, 1 apply, 2 grad stats, 3 grad
void axis_kernel(const Tensor& x, const OptTensor& grad, const Geometry& g, int64_t D, int64_t H, int64_t W,
                 const OptTensor& gd, const OptTensor& gh, const OptTensor& gw, const OptTensor& kd,
                 const OptTensor& kh, const OptTensor& kw, const Tensor* out, Tensor* od, Tensor* oh, Tensor* ow) {
  using A = acc_t<T>;
  constexpr bool kReadsX = PHASE != 3;
  constexpr bool kReadsG = PHASE >= 2;
  constexpr bool kGates = PHASE != 0;
  constexpr bool kWrites = PHASE == 1 || PHASE == 3;
  constexpr bool kReduces = PHASE == 0 || PHASE == 2;
  const View<T> X = kReadsX ? view_of<T>(x) : no_view<T>();
  const View<T> G = kReadsG ? view_of<T>(*grad) : no_view<T>();
  const View<T> Y = kWrites ? view_of<T>(*out) : no_view<T>();
  const bool has_d = kGates ? gd.has_value() : (od != nullptr);
  const A* GD = kGates && has_d ? gd->data_ptr<A>() : nullptr;
  const A* GH = kGates ? gh->data_ptr<A>() : nullptr;
  const A* GW = kGates ? gw->data_ptr<A>() : nullptr;
  const A* KD = PHASE == 3 && has_d ? kd->data_ptr<A>() : nullptr;
  const A* KH = PHASE == 3 ? kh->data_ptr<A>() : nullptr;
  const A* KW = PHASE == 3 ? kw->data_ptr<A>() : nullptr;
  A* OD = kReduces && has_d ? od->data_ptr<A>() : nullptr;
  A* OH = kReduces ? oh->data_ptr<A>() : nullptr;
  A* OW = kReduces ? ow->data_ptr<A>() : nullptr;
  const int64_t C = g.C;
  // strips [N, C, L]: NCS offset (n*C + c)*L + i, NSC offset n*C*L + i*C + c
  if (!g.cl) {
    const int64_t count = D * H;
    // Per-line values (line l = d * H + h) in one buffer per chunk of rows, not one per row.
    at::parallel_for(0, g.N * C, row_grain(g.S), [&](int64_t begin, int64_t end) {
    std::vector<A> first(count), second(count);
    // The grad stats' products, a block of whole lines at a time (at most 8,192 values, or one line if
    // that is longer): L1-resident whatever the plane's size.
    const int64_t block_lines = std::max<int64_t>(1, std::min<int64_t>(count, 8192 / std::max<int64_t>(W, 1)));
    std::vector<A> products(PHASE == 2 ? block_lines * W : 0);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / C, c = r % C;
      const T* xp = kReadsX ? X.row(n, c) : nullptr;
      const T* gp = kReadsG ? G.row(n, c) : nullptr;
      T* yp = kWrites ? Y.row(n, c) : nullptr;
      for (int64_t d = 0; d < D; ++d) {
        for (int64_t h = 0; h < H; ++h) {
          const int64_t l = d * H + h;
          const A dgate = GD ? GD[r * D + d] : A(1);
          if constexpr (PHASE == 1) {
            first[l] = GH[r * H + h];
            second[l] = dgate;
          } else if constexpr (PHASE == 2) {
            first[l] = GH[r * H + h] * dgate;
          } else if constexpr (PHASE == 3) {
            first[l] = GH[r * H + h] * dgate;
            second[l] = KH[r * H + h] + (KD ? KD[r * D + d] : A(0));
          }
        }
      }
      if constexpr (PHASE == 0 || PHASE == 2) {
        A* owr = OW + r * W;
        std::fill(owr, owr + W, A(0));
        if constexpr (PHASE == 0) {
          axis_sum_plane(xp, owr, second.data(), count, W);
        } else {
          for (int64_t l0 = 0; l0 < count; l0 += block_lines) {
            const int64_t lines = std::min(block_lines, count - l0);
            product_run(gp + l0 * W, xp + l0 * W, products.data(), lines * W);
            axis_stats_products(products.data(), GW + r * W, first.data() + l0, owr, second.data() + l0, lines, W);
          }
        }
        A* ohr = OH + r * H;
        A* odr = OD ? OD + r * D : nullptr;
        std::fill(ohr, ohr + H, A(0));
        if (odr) std::fill(odr, odr + D, A(0));
        for (int64_t d = 0; d < D; ++d) {
          const A dgate = PHASE == 2 && GD ? GD[r * D + d] : A(1);
          for (int64_t h = 0; h < H; ++h) {
            const A line = second[d * H + h];
            ohr[h] += line * dgate;
            if (odr) odr[d] += PHASE == 2 ? line * GH[r * H + h] : line;
          }
        }
      } else if constexpr (PHASE == 1) {
        axis_apply_plane(xp, yp, GW + r * W, first.data(), second.data(), count, W);
      } else {
        axis_grad_plane(gp, yp, GW + r * W, first.data(), second.data(), KW + r * W, count, W);
      }
    }
    });
    return;
  }
  // NSC. Strips are [N, L, C] in memory. The elementwise phases walk tiles of positions with full-C
  // runs; the reductions walk every position for a block of channels (no two blocks share a strip).
  if constexpr (PHASE == 1 || PHASE == 3) {
    std::vector<A> ones(C, A(1)), zeros(C, A(0));
    parallel_tiles(g, tile_plan(g), [&](int64_t n, int64_t s0, int64_t s1, int64_t) {
      const int64_t nd = n * C * D, nh = n * C * H, nw = n * C * W;
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t w = s % W, h = (s / W) % H, d = s / (W * H);
        const A* gdp = GD ? GD + nd + d * C : ones.data();
        if constexpr (PHASE == 1) {
          axis_apply_pos(X.pos(n, s), Y.pos(n, s), GW + nw + w * C, GH + nh + h * C, gdp, C);
        } else {
          axis_grad_pos(G.pos(n, s), Y.pos(n, s), GW + nw + w * C, GH + nh + h * C, gdp, KW + nw + w * C,
                        KH + nh + h * C, KD ? KD + nd + d * C : zeros.data(), C);
        }
      }
    });
    return;
  }
  parallel_channel_blocks(g, [&](int64_t n, int64_t c0, int64_t c1) {
    const int64_t len = c1 - c0;
    const int64_t nd = n * C * D, nh = n * C * H, nw = n * C * W;
    A line[kChannelBlock], hd[kChannelBlock], ones[kChannelBlock];
    std::fill(ones, ones + len, A(1));
    if (kReduces) {
      for (int64_t d = 0; d < D && OD; ++d) std::fill(OD + nd + d * C + c0, OD + nd + d * C + c1, A(0));
      for (int64_t h = 0; h < H; ++h) std::fill(OH + nh + h * C + c0, OH + nh + h * C + c1, A(0));
      for (int64_t w = 0; w < W; ++w) std::fill(OW + nw + w * C + c0, OW + nw + w * C + c1, A(0));
    }
    for (int64_t d = 0; d < D; ++d) {
      const A* gdp = GD ? GD + nd + d * C + c0 : ones;
      for (int64_t h = 0; h < H; ++h) {
        const A* ghp = kGates ? GH + nh + h * C + c0 : nullptr;
        if (kReduces) std::fill(line, line + len, A(0));
        if (PHASE == 2) {
          for (int64_t j = 0; j < len; ++j) hd[j] = ghp[j] * gdp[j];
        }
        for (int64_t w = 0; w < W; ++w) {
          const int64_t s = (d * H + h) * W + w;
          const A* gwp = kGates ? GW + nw + w * C + c0 : nullptr;
          if constexpr (PHASE == 0) {
            axis_sum_pos(X.pos(n, s) + c0, OW + nw + w * C + c0, line, len);
          } else {
            axis_stats_pos(G.pos(n, s) + c0, X.pos(n, s) + c0, gwp, hd, OW + nw + w * C + c0, line, len);
          }
        }
        if constexpr (PHASE == 0) {
          A* ohp = OH + nh + h * C + c0;
          A* odp = OD ? OD + nd + d * C + c0 : nullptr;
          for (int64_t j = 0; j < len; ++j) {
            ohp[j] += line[j];
            if (odp) odp[j] += line[j];
          }
        } else if constexpr (PHASE == 2) {
          A* ohp = OH + nh + h * C + c0;
          A* odp = OD ? OD + nd + d * C + c0 : nullptr;
          for (int64_t j = 0; j < len; ++j) {
            ohp[j] += line[j] * gdp[j];
            if (odp) odp[j] += line[j] * ghp[j];
          }
        }
      }
    }
  });
}

Geometry axis_geometry(const Tensor& x, bool channels_last, int64_t D, int64_t H, int64_t W) {
  const Geometry g = geometry(x, channels_last);
  TORCH_CHECK(D * H * W == g.S, "axis kernels: D*H*W = ", D * H * W, " does not match S = ", g.S);
  return g;
}

std::vector<Tensor> axis_sums(const Tensor& x, bool channels_last, int64_t D, int64_t H, int64_t W, bool with_d) {
  const Geometry g = axis_geometry(x, channels_last, D, H, W);
  auto opts = x.options().dtype(acc_type(x));
  Tensor sd = with_d ? new_strip(g, D, opts) : at::empty({0}, opts);
  Tensor sh = new_strip(g, H, opts);
  Tensor sw = new_strip(g, W, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "axis_sums", [&] {
    axis_kernel<scalar_t, 0>(x, std::nullopt, g, D, H, W, std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                             std::nullopt, std::nullopt, nullptr, with_d ? &sd : nullptr, &sh, &sw);
  });
  return {sd, sh, sw};
}

void axis_apply(const Tensor& x, bool channels_last, int64_t D, int64_t H, int64_t W, const OptTensor& gd,
                const Tensor& gh, const Tensor& gw, const Tensor& out) {
  const Geometry g = axis_geometry(x, channels_last, D, H, W);
  check_full(out, g, "out");
  const auto acc = acc_type(x);
  if (gd.has_value()) check_strip(*gd, g, D, acc, "gd");
  check_strip(gh, g, H, acc, "gh");
  check_strip(gw, g, W, acc, "gw");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "axis_apply", [&] {
    axis_kernel<scalar_t, 1>(x, std::nullopt, g, D, H, W, gd, gh, gw, std::nullopt, std::nullopt, std::nullopt,
                             &out, nullptr, nullptr, nullptr);
  });
}

std::vector<Tensor> axis_grad_stats(const Tensor& grad, const Tensor& x, bool channels_last, int64_t D, int64_t H,
                                    int64_t W, const OptTensor& gd, const Tensor& gh, const Tensor& gw) {
  const Geometry g = axis_geometry(x, channels_last, D, H, W);
  check_full(grad, g, "grad");
  const auto acc = acc_type(x);
  if (gd.has_value()) check_strip(*gd, g, D, acc, "gd");
  check_strip(gh, g, H, acc, "gh");
  check_strip(gw, g, W, acc, "gw");
  auto opts = x.options().dtype(acc);
  const bool with_d = gd.has_value();
  Tensor od = with_d ? new_strip(g, D, opts) : at::empty({0}, opts);
  Tensor oh = new_strip(g, H, opts);
  Tensor ow = new_strip(g, W, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "axis_grad_stats", [&] {
    axis_kernel<scalar_t, 2>(x, grad, g, D, H, W, gd, gh, gw, std::nullopt, std::nullopt, std::nullopt, nullptr,
                             with_d ? &od : nullptr, &oh, &ow);
  });
  return {od, oh, ow};
}

void axis_grad(const Tensor& grad, bool channels_last, int64_t D, int64_t H, int64_t W, const OptTensor& gd,
               const Tensor& gh, const Tensor& gw, const OptTensor& kd, const Tensor& kh, const Tensor& kw,
               const Tensor& out) {
  const Geometry g = axis_geometry(grad, channels_last, D, H, W);
  check_full(out, g, "out");
  const auto acc = acc_type(grad);
  TORCH_CHECK(gd.has_value() == kd.has_value(), "axis_grad: gd and kd go together");
  if (gd.has_value()) {
    check_strip(*gd, g, D, acc, "gd");
    check_strip(*kd, g, D, acc, "kd");
  }
  check_strip(gh, g, H, acc, "gh");
  check_strip(gw, g, W, acc, "gw");
  check_strip(kh, g, H, acc, "kh");
  check_strip(kw, g, W, acc, "kw");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "axis_grad", [&] {
    axis_kernel<scalar_t, 3>(grad, grad, g, D, H, W, gd, gh, gw, kd, kh, kw, &out, nullptr, nullptr, nullptr);
  });
}

// ---------------------------------------------------------------------------------------------------
// CBAM with both gates. x' = round(x r[n, c]), y = x' m[n, s]. With the per-position gradients of the
// spatial pools (kmean = d/d psum, kmaxc = d/d pmax / ties), the gradient w.r.t. x' is
//   dxp = g m + kmean + kmaxc [x' == pmax]
//   cbam_grad_stats  dr[n, c] = sum_s dxp x
//   cbam_grad        dx = dxp r + krow[n, c] + kcmaxc[n, c] [x == cmax[n, c]]

template <typename A>
inline A cbam_dxp(A gv, A xq, A m, A kmean, A kmaxc, A pmax) {
  return gv * m + kmean + (xq == pmax ? kmaxc : A(0));
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN A cbam_stats_row(const T* EXCITE_R g, const T* EXCITE_R x, A r, const A* EXCITE_R m, const A* EXCITE_R kmean,
                 const A* EXCITE_R kmaxc, const A* EXCITE_R pmax, int64_t len) {
  A total = 0;
  EXCITE_SIMD_SUM(total)
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    total += cbam_dxp(load(g + i), round_to<T>(v * r), m[i], kmean[i], kmaxc[i], pmax[i]) * v;
  }
  return total;
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void cbam_stats_pos(const T* EXCITE_R g, const T* EXCITE_R x, const A* EXCITE_R r, A m, A kmean, A kmaxc, A pmax,
                    A* EXCITE_R acc, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    acc[i] += cbam_dxp(load(g + i), round_to<T>(v * r[i]), m, kmean, kmaxc, pmax) * v;
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void cbam_grad_row(const T* EXCITE_R g, const T* EXCITE_R x, T* EXCITE_R y, A r, const A* EXCITE_R m,
                   const A* EXCITE_R kmean, const A* EXCITE_R kmaxc, const A* EXCITE_R pmax, A krow, A kcmaxc, A cmax,
                   int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A dxp = cbam_dxp(load(g + i), round_to<T>(v * r), m[i], kmean[i], kmaxc[i], pmax[i]);
    store(y + i, dxp * r + krow + (v == cmax ? kcmaxc : A(0)));
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void cbam_grad_pos(const T* EXCITE_R g, const T* EXCITE_R x, T* EXCITE_R y, const A* EXCITE_R r, A m, A kmean,
                   A kmaxc, A pmax, const A* EXCITE_R krow, const A* EXCITE_R kcmaxc, const A* EXCITE_R cmax,
                   int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) {
    const A v = load(x + i);
    const A dxp = cbam_dxp(load(g + i), round_to<T>(v * r[i]), m, kmean, kmaxc, pmax);
    const A kc = kcmaxc[i];
    store(y + i, dxp * r[i] + krow[i] + (v == cmax[i] ? kc : A(0)));
  }
}

void check_cbam(const Geometry& g, at::ScalarType acc, const Tensor& r, const Tensor& m, const Tensor& kmean,
                const Tensor& kmaxc, const Tensor& pmax) {
  check_small(r, acc, g.N * g.C, "r");
  check_small(m, acc, g.N * g.S, "m");
  check_small(kmean, acc, g.N * g.S, "kmean");
  check_small(kmaxc, acc, g.N * g.S, "kmaxc");
  check_small(pmax, acc, g.N * g.S, "pmax");
}

Tensor cbam_grad_stats(const Tensor& grad, const Tensor& x, bool channels_last, const Tensor& r, const Tensor& m,
                       const Tensor& kmean, const Tensor& kmaxc, const Tensor& pmax) {
  const Geometry g = geometry(x, channels_last);
  check_full(grad, g, "grad");
  const auto acc = acc_type(x);
  check_cbam(g, acc, r, m, kmean, kmaxc, pmax);
  Tensor out_row = at::empty({g.N, g.C}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "cbam_grad_stats", [&] {
    using A = acc_t<scalar_t>;
    const View<scalar_t> G = view_of<scalar_t>(grad);
    const View<scalar_t> X = view_of<scalar_t>(x);
    const A* R = r.data_ptr<A>();
    const A* M = m.data_ptr<A>();
    const A* KMEAN = kmean.data_ptr<A>();
    const A* KMAX = kmaxc.data_ptr<A>();
    const A* PMAX = pmax.data_ptr<A>();
    A* OR = out_row.data_ptr<A>();
    const int64_t C = g.C, S = g.S;
    if (!g.cl) {
      parallel_rows(g, [&](int64_t n, int64_t c) {
        const int64_t p0 = n * S;
        OR[n * C + c] =
            cbam_stats_row(G.row(n, c), X.row(n, c), R[n * C + c], M + p0, KMEAN + p0, KMAX + p0, PMAX + p0, S);
      });
    } else {
      const TilePlan plan = tile_plan(g);
      std::vector<A> partial(plan.tiles * C, A(0));
      A* PR = partial.data();
      parallel_tiles(g, plan, [&](int64_t n, int64_t s0, int64_t s1, int64_t t) {
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t ps = n * S + s;
          cbam_stats_pos(G.pos(n, s), X.pos(n, s), R + n * C, M[ps], KMEAN[ps], KMAX[ps], PMAX[ps], PR + t * C, C);
        }
      });
      reduce_tile_partials(g, plan, PR, OR);
    }
  });
  return out_row;
}

void cbam_grad(const Tensor& grad, const Tensor& x, bool channels_last, const Tensor& r, const Tensor& m,
               const Tensor& kmean, const Tensor& kmaxc, const Tensor& pmax, const Tensor& krow,
               const Tensor& kcmaxc, const Tensor& cmax, const Tensor& out) {
  const Geometry g = geometry(x, channels_last);
  check_full(grad, g, "grad");
  check_full(out, g, "out");
  const auto acc = acc_type(x);
  check_cbam(g, acc, r, m, kmean, kmaxc, pmax);
  check_small(krow, acc, g.N * g.C, "krow");
  check_small(kcmaxc, acc, g.N * g.C, "kcmaxc");
  check_small(cmax, acc, g.N * g.C, "cmax");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "cbam_grad", [&] {
    using A = acc_t<scalar_t>;
    const View<scalar_t> G = view_of<scalar_t>(grad);
    const View<scalar_t> X = view_of<scalar_t>(x);
    const View<scalar_t> Y = view_of<scalar_t>(out);
    const A* R = r.data_ptr<A>();
    const A* M = m.data_ptr<A>();
    const A* KMEAN = kmean.data_ptr<A>();
    const A* KMAX = kmaxc.data_ptr<A>();
    const A* PMAX = pmax.data_ptr<A>();
    const A* KR = krow.data_ptr<A>();
    const A* KC = kcmaxc.data_ptr<A>();
    const A* CM = cmax.data_ptr<A>();
    const int64_t C = g.C, S = g.S;
    if (!g.cl) {
      parallel_rows(g, [&](int64_t n, int64_t c) {
        const int64_t p0 = n * S;
        const int64_t rc = n * C + c;
        cbam_grad_row(G.row(n, c), X.row(n, c), Y.row(n, c), R[rc], M + p0, KMEAN + p0, KMAX + p0, PMAX + p0, KR[rc],
                      KC[rc], CM[rc], S);
      });
    } else {
      parallel_tiles(g, tile_plan(g), [&](int64_t n, int64_t s0, int64_t s1, int64_t) {
        const int64_t r0 = n * C;
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t ps = n * S + s;
          cbam_grad_pos(G.pos(n, s), X.pos(n, s), Y.pos(n, s), R + r0, M[ps], KMEAN[ps], KMAX[ps], PMAX[ps], KR + r0,
                        KC + r0, CM + r0, C);
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// CBAM's spatial convolution: C_in -> 1 channel, odd kernel, stride 1, "same" zero padding, no bias, on
// the small pooled map (N, C_in, *spatial), contiguous, 1-3 spatial axes (viewed as D, H, W). oneDNN
// spends more on set-up than on the arithmetic for maps this small (and its backward for 2 -> 1
// channels is several times its forward). Each output row is a sum of shifted input rows, one
// multiply-add per tap and position along the unit-stride W axis.

struct ConvGeometry {
  int64_t N, C, D, H, W, KD, KH, KW;
};

ConvGeometry conv_geometry(const Tensor& inp, const Tensor& weight) {
  const int64_t dims = inp.dim() - 2;
  TORCH_CHECK(dims >= 1 && dims <= 3, "small_conv: input must be (N, C, *spatial) with 1-3 spatial axes");
  TORCH_CHECK(inp.is_contiguous(), "small_conv: input must be contiguous");
  TORCH_CHECK(weight.dim() == inp.dim() && weight.size(0) == 1 && weight.size(1) == inp.size(1),
              "small_conv: weight must be (1, C, *kernel)");
  TORCH_CHECK(weight.is_contiguous() && weight.scalar_type() == acc_type(inp),
              "small_conv: weight must be contiguous in the accumulation dtype");
  int64_t sizes[3] = {1, 1, 1}, kernel[3] = {1, 1, 1};
  for (int64_t i = 0; i < dims; ++i) {
    sizes[3 - dims + i] = inp.size(2 + i);
    kernel[3 - dims + i] = weight.size(2 + i);
    TORCH_CHECK(kernel[3 - dims + i] % 2 == 1, "small_conv: kernel sizes must be odd");
  }
  return {inp.size(0), inp.size(1), sizes[0], sizes[1], sizes[2], kernel[0], kernel[1], kernel[2]};
}

inline int64_t conv_grain(const ConvGeometry& g, int64_t taps_per_row) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(taps_per_row * g.W, 1));
}

// A contiguous (N, 1, *spatial) map of the given dtype: the convolution's output and its gradient.
void check_single_channel(const Tensor& t, const ConvGeometry& g, at::ScalarType dtype, const char* what) {
  TORCH_CHECK(t.is_contiguous() && t.scalar_type() == dtype && t.numel() == g.N * g.D * g.H * g.W, what,
              " must be a contiguous (N, 1, *spatial) tensor of the input's dtype");
}

// f(kd, kh, row_d, row_h) for each kernel row whose map row (d + sign·(kd - PD), h + sign·(kh - PH)) lies
// inside the map: sign +1 gathers the input rows of an output row, -1 the output rows of an input row.
template <class F>
inline void for_each_tap_row(const ConvGeometry& g, int64_t d, int64_t h, int64_t sign, const F& f) {
  for (int64_t kd = 0; kd < g.KD; ++kd) {
    const int64_t row_d = d + sign * (kd - g.KD / 2);
    if (row_d < 0 || row_d >= g.D) continue;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t row_h = h + sign * (kh - g.KH / 2);
      if (row_h >= 0 && row_h < g.H) f(kd, kh, row_d, row_h);
    }
  }
}

// A row widened to the accumulation type between `pad` zeros on each side, so that every tap below
// reads a full, unmasked window of it.
template <typename T, typename A = acc_t<T>>
EXCITE_RUN void padded_row_run(const T* EXCITE_R src, A* EXCITE_R dst, int64_t pad, int64_t len) {
  std::fill(dst, dst + pad, A(0));
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) dst[pad + i] = load(src + i);
  std::fill(dst + pad + len, dst + 2 * pad + len, A(0));
}

// acc[i] += Σ_k taps[k] · padded[i + k]: one kernel row's taps over a padded input row.
template <typename A>
EXCITE_RUN void taps_accumulate_run(const A* EXCITE_R padded, const A* EXCITE_R taps, int64_t K, A* EXCITE_R acc,
                                    int64_t len) {
  for (int64_t k = 0; k < K; ++k) {
    const A w = taps[k];
    const A* EXCITE_R window = padded + k;
    EXCITE_SIMD
    for (int64_t i = 0; i < len; ++i) acc[i] += w * window[i];
  }
}

// products[k][i] += a[i] · padded[i + k]: the weight gradient's K elementwise products of one row pair,
// summed along i only once per chunk of rows (a horizontal sum per row and tap would cost more than
// the products).
template <typename A>
EXCITE_RUN void taps_product_run(const A* EXCITE_R a, const A* EXCITE_R padded, int64_t K, A* EXCITE_R products,
                                 int64_t len) {
  for (int64_t k = 0; k < K; ++k) {
    const A* EXCITE_R window = padded + k;
    A* EXCITE_R line = products + k * len;
    EXCITE_SIMD
    for (int64_t i = 0; i < len; ++i) line[i] += a[i] * window[i];
  }
}

template <typename T, typename A = acc_t<T>>
EXCITE_RUN void store_run(const A* EXCITE_R acc, T* EXCITE_R out, int64_t len) {
  EXCITE_SIMD
  for (int64_t i = 0; i < len; ++i) store(out + i, acc[i]);
}

// out[n, 0, d, h, :] = Σ_{c, kd, kh, kw} w[c, kd, kh, kw] · inp[n, c, d + kd - PD, h + kh - PH, : + kw - PW]
void small_conv(const Tensor& inp, const Tensor& weight, const Tensor& out) {
  const ConvGeometry g = conv_geometry(inp, weight);
  check_single_channel(out, g, inp.scalar_type(), "small_conv: out");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, inp.scalar_type(), "small_conv", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* X = inp.data_ptr<scalar_t>();
    const A* Wt = weight.data_ptr<A>();
    scalar_t* Y = out.data_ptr<scalar_t>();
    const int64_t PW = g.KW / 2;
    at::parallel_for(0, g.N * g.D * g.H, conv_grain(g, g.C * g.KD * g.KH * g.KW), [&](int64_t begin, int64_t end) {
      std::vector<A> acc(g.W), padded(g.W + 2 * PW);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t n = r / (g.D * g.H), d = (r / g.H) % g.D, h = r % g.H;
        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t c = 0; c < g.C; ++c) {
          for_each_tap_row(g, d, h, 1, [&](int64_t kd, int64_t kh, int64_t id, int64_t ih) {
            padded_row_run(X + (((n * g.C + c) * g.D + id) * g.H + ih) * g.W, padded.data(), PW, g.W);
            taps_accumulate_run(padded.data(), Wt + ((c * g.KD + kd) * g.KH + kh) * g.KW, g.KW, acc.data(), g.W);
          });
        }
        store_run(acc.data(), Y + r * g.W, g.W);
      }
    });
  });
}

// The input gradient: out[n, c, d, h, :] = Σ_{kd, kh, kw} w[c, kd, kh, kw] · grad[n, d - kd + PD, h - kh + PH,
// : - kw + PW] (the transposed convolution).
void small_conv_input_grad(const Tensor& grad, const Tensor& weight, const Tensor& out) {
  const ConvGeometry g = conv_geometry(out, weight);
  check_single_channel(grad, g, out.scalar_type(), "small_conv_input_grad: grad");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "small_conv_input_grad", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* G = grad.data_ptr<scalar_t>();
    const A* Wt = weight.data_ptr<A>();
    scalar_t* Y = out.data_ptr<scalar_t>();
    const int64_t PW = g.KW / 2;
    at::parallel_for(0, g.N * g.C * g.D * g.H, conv_grain(g, g.KD * g.KH * g.KW), [&](int64_t begin, int64_t end) {
      std::vector<A> acc(g.W), padded(g.W + 2 * PW), flipped(g.KW);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t n = r / (g.C * g.D * g.H), c = (r / (g.D * g.H)) % g.C, d = (r / g.H) % g.D, h = r % g.H;
        std::fill(acc.begin(), acc.end(), A(0));
        for_each_tap_row(g, d, h, -1, [&](int64_t kd, int64_t kh, int64_t od, int64_t oh) {
          // grad[w - kw + PW] over kw is the padded grad row read at w + (KW - 1 - kw): flipped taps.
          const A* taps = Wt + ((c * g.KD + kd) * g.KH + kh) * g.KW;
          for (int64_t k = 0; k < g.KW; ++k) flipped[k] = taps[g.KW - 1 - k];
          padded_row_run(G + ((n * g.D + od) * g.H + oh) * g.W, padded.data(), PW, g.W);
          taps_accumulate_run(padded.data(), flipped.data(), g.KW, acc.data(), g.W);
        });
        store_run(acc.data(), Y + r * g.W, g.W);
      }
    });
  });
}

// The weight gradient: Σ_{n, d, h, w} grad[n, d, h, w] · inp[n, c, d + kd - PD, h + kh - PH, w + kw - PW], in
// the accumulation dtype. Output rows are split into a fixed number of chunks whose partial sums are
// added in chunk order, so the result does not depend on the thread count.
Tensor small_conv_weight_grad(const Tensor& grad, const Tensor& inp, const Tensor& weight) {
  const ConvGeometry g = conv_geometry(inp, weight);
  check_single_channel(grad, g, inp.scalar_type(), "small_conv_weight_grad: grad");
  Tensor result = at::empty(weight.sizes(), weight.options());
  const int64_t taps = g.C * g.KD * g.KH * g.KW;
  const int64_t rows = g.N * g.D * g.H;
  const int64_t chunks = std::min<int64_t>(rows, 16);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, inp.scalar_type(), "small_conv_weight_grad", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* G = grad.data_ptr<scalar_t>();
    const scalar_t* X = inp.data_ptr<scalar_t>();
    const int64_t PW = g.KW / 2;
    std::vector<A> partial(chunks * taps, A(0));
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      std::vector<A> grow(g.W), padded(g.W + 2 * PW), products(taps * g.W);
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        std::fill(products.begin(), products.end(), A(0));
        for (int64_t r = chunk * rows / chunks; r < (chunk + 1) * rows / chunks; ++r) {
          const int64_t n = r / (g.D * g.H), d = (r / g.H) % g.D, h = r % g.H;
          padded_row_run(G + r * g.W, grow.data(), 0, g.W);
          for (int64_t c = 0; c < g.C; ++c) {
            for_each_tap_row(g, d, h, 1, [&](int64_t kd, int64_t kh, int64_t id, int64_t ih) {
              padded_row_run(X + (((n * g.C + c) * g.D + id) * g.H + ih) * g.W, padded.data(), PW, g.W);
              taps_product_run(grow.data(), padded.data(), g.KW,
                               products.data() + ((c * g.KD + kd) * g.KH + kh) * g.KW * g.W, g.W);
            });
          }
        }
        A* part = partial.data() + chunk * taps;
        for (int64_t t = 0; t < taps; ++t) part[t] = sum_run<A, A>(products.data() + t * g.W, g.W);
      }
    });
    A* out = result.data_ptr<A>();
    std::fill(out, out + taps, A(0));
    for (int64_t chunk = 0; chunk < chunks; ++chunk) accumulate_run<A, A>(partial.data() + chunk * taps, out, taps);
  });
  return result;
}

}  // namespace excite_fused

// Registered as torch.ops.excite_fused.* (no pybind11: the build stays short). Called only from the
// autograd Functions in excite/fused, under no_grad, so writing into `out` needs no alias annotations.
TORCH_LIBRARY(excite_fused, m) {
  using namespace excite_fused;
  m.def("channel_stats", &channel_stats);
  m.def("channel_moments", &channel_moments);
  m.def("gate_apply", &gate_apply);
  m.def("gate_grad_stats", &gate_grad_stats);
  m.def("gate_grad", &gate_grad);
  m.def("filter_grad", &filter_grad);
  m.def("weight_grad", &weight_grad);
  m.def("position_stats", &position_stats);
  m.def("simam_forward", &simam_forward);
  m.def("simam_grad_stats", &simam_grad_stats);
  m.def("simam_grad", &simam_grad);
  m.def("axis_sums", &axis_sums);
  m.def("axis_apply", &axis_apply);
  m.def("axis_grad_stats", &axis_grad_stats);
  m.def("axis_grad", &axis_grad);
  m.def("cbam_grad_stats", &cbam_grad_stats);
  m.def("cbam_grad", &cbam_grad);
  m.def("small_conv", &small_conv);
  m.def("small_conv_input_grad", &small_conv_input_grad);
  m.def("small_conv_weight_grad", &small_conv_weight_grad);
}
