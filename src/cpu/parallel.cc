// src/cpu/parallel.cc: parallel_for over std::thread with an atomic work counter. A thread the
// machine cannot start is a proxyattn::Error (the started ones are joined first), never an abort.
#include "cpu/parallel.h"

#include "common/check.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace proxyattn::cpu {

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallel_for(std::int64_t n, int num_threads, const std::function<void(std::int64_t)>& fn) {
  parallel_for_workers(n, num_threads, [&](std::int64_t i, int) { fn(i); });
}

void parallel_for_workers(std::int64_t n, int num_threads,
                          const std::function<void(std::int64_t, int)>& fn) {
  const int threads = static_cast<int>(std::min<std::int64_t>(resolve_threads(num_threads), n));
  if (threads <= 1) {
    for (std::int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  std::atomic<std::int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&](int id) {
    for (std::int64_t i = next++; i < n; i = next++) {
      try {
        fn(i, id);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  try {
    pool.reserve(threads - 1);
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  } catch (const std::exception& e) {  // std::system_error (no thread) or std::bad_alloc
    next = n;  // started workers stop after their current item
    for (std::thread& t : pool) t.join();
    PROXYATTN_FAIL("num_threads = ", num_threads, ": could start only ", pool.size() + 1,
                   " of ", threads, " threads (", e.what(), ")");
  }
  worker(0);
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace proxyattn::cpu
