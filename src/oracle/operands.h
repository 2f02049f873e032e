// src/oracle/operands.h: the oracle's operands validated into the Problem its loops read.
#pragma once

#include "common/problem.h"
#include "common/validate.h"
#include "proxyattn/oracle/reference.h"

namespace proxyattn::reference {

/// \brief Validates operands as the public entries validate theirs; v, out and lse may be absent
/// (rank 0).
inline Problem resolve(const Operands& o) {
  auto opt = [](const TensorView& t) { return t.rank == 0 ? nullptr : &t; };
  return make_problem(o.q, o.k, opt(o.v), opt(o.out), opt(o.lse), o.cu_seqlens, o.scale);
}

}  // namespace proxyattn::reference
