// tests/testing/compare.cc
#include "testing/compare.h"

#include <cmath>
#include <sstream>

#include "common/numeric.h"
#include "common/validate.h"
#include "cpu/reference.h"

namespace proxyattn::testing {

Problem problem_of(const Workload& w, const Output* out, float scale) {
  const TensorView q = w.q_view(), k = w.k_view(), v = w.v_view();
  return make_problem(q, k, &v, out ? &out->o_view : nullptr, out ? &out->lse_view : nullptr,
                      w.seqlens(), scale);
}

namespace {

// The naive same-precision run's error against r (STYLE.md section 6's yardstick).
OutputError naive_error(const Workload& w, std::int64_t block_size,
                        const std::vector<std::uint8_t>& mask, float scale, const Reference& r) {
  std::vector<std::uint8_t> naive;
  reference::naive_attend(problem_of(w, nullptr, scale), block_size, mask, naive);
  const TensorView q = w.q_view(), k = w.k_view(), v = w.v_view();
  const TensorView o = TensorView::contiguous(naive.data(), w.spec.dtype,
                                              {w.total_tokens, w.spec.num_qo_heads, w.spec.head_dim});
  return compare_output(make_problem(q, k, &v, &o, nullptr, w.seqlens(), scale), r.out, r.lse);
}

}  // namespace

Reference reference_attend(const Workload& w, std::int64_t block_size,
                           const std::vector<std::uint8_t>& mask, float scale) {
  Reference r;
  reference::attend(problem_of(w, nullptr, scale), block_size, mask, r.out, r.lse);
  r.naive = naive_error(w, block_size, mask, scale, r);
  return r;
}

Reference reference_dense(const Workload& w, float scale) {
  constexpr std::int64_t kBlock = 128;
  return reference_attend(w, kBlock, reference::full_mask(w.shape(), kBlock), scale);
}

std::string describe_mismatches(const Workload& w, const Output& out, const Reference& ref,
                                double tol, int limit) {
  const std::int64_t T = w.total_tokens, H = w.spec.num_qo_heads, D = w.spec.head_dim;
  std::ostringstream os;
  double max_abs = 0.0, sum_abs = 0.0, err2 = 0.0, ref2 = 0.0;
  int shown = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t d = 0; d < D; ++d) {
        const std::int64_t e = (t * H + h) * D + d;
        const double x = load_float(out.o.data(), w.spec.dtype, e), y = ref.out[e];
        const double diff = std::fabs(x - y);
        max_abs = std::max(max_abs, diff);
        sum_abs += diff;
        err2 += diff * diff;
        ref2 += y * y;
        if ((!(diff <= tol)) && shown < limit) {
          os << "  (head " << h << ", token " << t << ", dim " << d << "): got " << x << ", want "
             << y << "\n";
          ++shown;
        }
      }
    }
  }
  os << "  max abs " << max_abs << ", mean abs " << sum_abs / static_cast<double>(T * H * D)
     << ", nmse " << (ref2 > 0 ? err2 / ref2 : err2);
  return os.str();
}

}  // namespace proxyattn::testing
