// src/cpu/backend.h: the multithreaded CPU backend behind the public API. The public entries
// validate; these run docs/SPEC.md's stages, each in its own file (estimate, budget, select,
// attend).
#pragma once

#include "proxyattn/config.h"
#include "proxyattn/plan.h"
#include "common/problem.h"

namespace proxyattn::cpu {

/// \brief Stages 1-6 into plan's arrays; scratch from workspace (layout offsets).
void plan(const Problem& problem, const Config& config, Plan& plan, Workspace workspace,
          const Runtime& runtime);
/// \brief Stage 7 over plan.
void attend(const Problem& problem, const Plan& plan, const Runtime& runtime);
/// \brief Dense causal attention.
void dense(const Problem& problem, const Runtime& runtime);

}  // namespace proxyattn::cpu
