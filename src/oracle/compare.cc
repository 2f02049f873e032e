// src/oracle/compare.cc: the double reference on a workload, and mismatch reports.
#include "proxyattn/oracle/compare.h"

#include <cmath>
#include <sstream>

#include "common/numeric.h"
#include "proxyattn/oracle/reference.h"

namespace proxyattn::testing {

reference::Operands operands_of(const Workload& w, const Output* out, float scale) {
  reference::Operands o;
  o.q = w.q_view();
  o.k = w.k_view();
  o.v = w.v_view();
  if (out != nullptr) {
    o.out = out->o_view;
    o.lse = out->lse_view;
  }
  o.cu_seqlens = w.seqlens();
  o.scale = scale;
  return o;
}

namespace {

// The naive same-precision run's error against r (docs/STYLE.md section 6's yardstick).
OutputError naive_error(const Workload& w, std::int64_t block_size,
                        const std::vector<std::uint8_t>& mask, float scale, const Reference& r) {
  std::vector<std::uint8_t> naive;
  reference::naive_attend(operands_of(w, nullptr, scale), block_size, mask, naive);
  reference::Operands o = operands_of(w, nullptr, scale);
  o.out = TensorView::contiguous(naive.data(), w.spec.dtype,
                                 {w.total_tokens, w.spec.num_qo_heads, w.spec.head_dim});
  return compare_output(o, r.out, r.lse);
}

}  // namespace

Reference reference_attend(const Workload& w, std::int64_t block_size,
                           const std::vector<std::uint8_t>& mask, float scale) {
  Reference r;
  reference::attend(operands_of(w, nullptr, scale), block_size, mask, r.out, r.lse);
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
        max_abs = std::isnan(diff) || std::isnan(max_abs) ? NAN : std::max(max_abs, diff);
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
