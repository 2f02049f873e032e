// src/cpu/kernels/amx.cc: AMX bf16 tiles (Sapphire Rapids and later). Compiled with -mamx-tile
// -mamx-bf16; called only when kernels::cpu_features().amx (cpuid, XCR0 tile state and the Linux
// permission request all succeeded). Today: the in-process tdpbf16ps peak; attention on AMX
// machines still runs the vdpbf16ps kernel.
#include <immintrin.h>
#include <time.h>

#include <cstdint>

#include "cpu/kernels/kernels.h"

namespace proxyattn::cpu::kernels {
namespace {

// LDTILECFG block: palette 1, then bytes per row and rows of each of the 8 tiles.
struct alignas(64) TileConfig {
  std::uint8_t palette_id;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};

double seconds_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);  // as the AVX-512 peak loops
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

double peak_amx_bf16_loop(double seconds) {
  TileConfig cfg = {};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;  // 16 fp32 (C) or 32 bf16 (A, B) per row
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
  alignas(64) static thread_local std::uint16_t a[16 * 32], b[16 * 32];  // one per thread
  for (int i = 0; i < 16 * 32; ++i) {
    a[i] = 0x3f80;  // 1.0
    b[i] = 0x3580;  // 2^-20
  }
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, b, 64);
  _tile_loadd(7, b, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  // 2 x 2 blocking: four independent C tiles, each tdpbf16ps = 16 x 16 x 32 MAC.
  const std::int64_t per_round = 1 << 12;
  std::int64_t rounds = 0;
  const double t0 = seconds_now();
  double t = t0;
  do {
    for (std::int64_t i = 0; i < per_round; ++i) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    ++rounds;
    t = seconds_now();
  } while (t - t0 < seconds);
  alignas(64) static thread_local float c[16 * 16];
  _tile_stored(0, c, 64);
  _tile_release();
  return static_cast<double>(rounds) * per_round * 4 * (16.0 * 16 * 32 * 2) / (t - t0) * 1e-9;
}

}  // namespace proxyattn::cpu::kernels
