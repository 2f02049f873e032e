// tools/proxyattn/png.cc: plans as PNG images (libpng).
//   write_plan_png: the selected blocks of some heads as heatmaps. Each head is an nb x nb panel,
//     query blocks down, key blocks across: selected blocks dark, causal blocks not selected
//     light, the upper triangle white. Panels sit side by side.
//   write_density_png: density per head as bars, one per head left to right, with grey lines at
//     densities 0.25, 0.5, 0.75 and 1.
#include <png.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "tools/proxyattn/cli.h"

namespace proxyattn::cli {

void write_plan_png(const std::string& path, const Plan& plan, const std::vector<int>& heads) {
  const PlanLayout& l = plan.layout;
  if (!(l.batch > 0 && l.num_blocks[0] > 0)) fail("--png: the first sequence is empty");
  if (!(plan.device == Device::kCPU)) fail("--png needs a host plan");
  const std::int64_t nb = l.num_blocks[0];
  const std::int64_t cell = std::max<std::int64_t>(1, 256 / nb);  // pixels per block
  const std::int64_t gap = 8, panel = nb * cell;
  const std::int64_t width = static_cast<std::int64_t>(heads.size()) * (panel + gap) - gap;
  const std::int64_t height = panel;
  const std::vector<std::uint8_t> mask = plan.to_dense();
  std::vector<std::uint8_t> image(width * height * 3, 255);
  for (std::size_t e = 0; e < heads.size(); ++e) {
    const std::int64_t h = heads[e], x0 = static_cast<std::int64_t>(e) * (panel + gap);
    for (std::int64_t m = 0; m < nb; ++m) {
      for (std::int64_t n = 0; n <= m; ++n) {
        const bool selected = mask[(h * nb + m) * nb + n] != 0;
        const std::uint8_t rgb[3] = {static_cast<std::uint8_t>(selected ? 24 : 225),
                                     static_cast<std::uint8_t>(selected ? 64 : 228),
                                     static_cast<std::uint8_t>(selected ? 160 : 235)};
        for (std::int64_t y = m * cell; y < (m + 1) * cell; ++y) {
          for (std::int64_t x = x0 + n * cell; x < x0 + (n + 1) * cell; ++x) {
            for (int c = 0; c < 3; ++c) image[(y * width + x) * 3 + c] = rgb[c];
          }
        }
      }
    }
  }
  write_rgb_png(path, width, height, image);
}

void write_density_png(const std::string& path, const std::vector<float>& density) {
  if (!(!density.empty())) fail("--density-png: no heads");
  constexpr std::int64_t kBar = 16, kGap = 4, kHeight = 200, kMargin = 8;
  const std::int64_t heads = static_cast<std::int64_t>(density.size());
  const std::int64_t width = 2 * kMargin + heads * (kBar + kGap) - kGap;
  const std::int64_t height = kHeight + 2 * kMargin;
  std::vector<std::uint8_t> image(width * height * 3, 255);
  auto paint = [&](std::int64_t x, std::int64_t y, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    std::uint8_t* px = &image[(y * width + x) * 3];
    px[0] = r;
    px[1] = g;
    px[2] = b;
  };
  for (int q = 1; q <= 4; ++q) {  // grid lines at 0.25 .. 1
    const std::int64_t y = kMargin + kHeight - q * kHeight / 4;
    for (std::int64_t x = 0; x < width; ++x) paint(x, y, 200, 200, 200);
  }
  for (std::int64_t h = 0; h < heads; ++h) {
    const float d = std::min(1.0f, std::max(0.0f, density[h]));
    const std::int64_t bar = static_cast<std::int64_t>(d * static_cast<float>(kHeight) + 0.5f);
    const std::int64_t x0 = kMargin + h * (kBar + kGap);
    for (std::int64_t y = kMargin + kHeight - bar; y < kMargin + kHeight; ++y) {
      for (std::int64_t x = x0; x < x0 + kBar; ++x) paint(x, y, 24, 64, 160);
    }
  }
  write_rgb_png(path, width, height, image);
}

void write_rgb_png(const std::string& path, std::int64_t width, std::int64_t height,
                   const std::vector<std::uint8_t>& image) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!(file != nullptr)) fail(path, ": cannot open for writing");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!(png != nullptr && info != nullptr)) fail(path, ": libpng could not start");
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fail(path, ": libpng failed while writing");
  }
  png_init_io(png, file.get());
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (std::int64_t y = 0; y < height; ++y) {
    png_write_row(png, const_cast<std::uint8_t*>(&image[y * width * 3]));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
}

}  // namespace proxyattn::cli
