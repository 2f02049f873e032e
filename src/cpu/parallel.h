// src/cpu/parallel.h: a static parallel-for. Work item i always runs the same code on the same
// data, whoever runs it, so results never depend on the number of threads.
#pragma once

#include <cstdint>
#include <functional>

namespace proxyattn::cpu {

/// \brief Threads to use: requested, or all hardware threads when requested <= 0.
int resolve_threads(int requested);

/// \brief Calls fn(i) for i in [0, n) on up to num_threads threads (items handed out in order).
/// The first exception thrown by fn is rethrown after every thread has finished. Any positive
/// num_threads is valid; if the machine cannot start that many threads, proxyattn::Error is
/// thrown after the started ones have been joined.
void parallel_for(std::int64_t n, int num_threads, const std::function<void(std::int64_t)>& fn);

/// \brief As parallel_for, but fn(i, worker) also gets the worker's index in
/// [0, min(resolve_threads(num_threads), n)), for per-worker scratch.
void parallel_for_workers(std::int64_t n, int num_threads,
                          const std::function<void(std::int64_t, int)>& fn);

}  // namespace proxyattn::cpu
