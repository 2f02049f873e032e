// tools/proxyattn/png.cc: the command line's figures, drawn with cairo, and atomic output files.
//   write_block_figure: selected blocks of some heads as nb x nb panels (query blocks down, key
//     blocks across): selected blocks dark blue, causal blocks not selected light grey, the upper
//     triangle white; a caption per panel (head, KV head, budget, density), axes and a legend.
//   write_density_figure: density per head as labelled bars with a 0-1 axis and a legend.
//   write_line_figure: line charts with interval whiskers (eval: accuracy and time against length).
//   write_plan_png: `proxyattn plan --png` on top of these (--density-png is a density figure).
#include "tools/proxyattn/png.h"

#include <cairo.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>

#include "proxyattn/types.h"

namespace proxyattn::cli {

namespace {

[[noreturn]] void png_fail(const std::string& message) { throw Error("proxyattn: " + message); }

std::string errno_text(int err) { return std::strerror(err); }

// Writes all of bytes to fd; false on any error (errno set).
bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

struct Rgb {
  double r, g, b;
};
constexpr Rgb kSelected{0.09, 0.25, 0.63}, kNotSelected{0.87, 0.88, 0.91}, kInk{0.1, 0.1, 0.1},
    kGrid{0.85, 0.85, 0.85}, kAxis{0.3, 0.3, 0.3};
constexpr Rgb kPalette[] = {{0.09, 0.25, 0.63}, {0.85, 0.37, 0.01}, {0.17, 0.63, 0.17},
                            {0.58, 0.40, 0.74}, {0.84, 0.15, 0.16}, {0.55, 0.34, 0.29}};

// A cairo image surface and context, written out as PNG bytes.
class Canvas {
 public:
  Canvas(int width, int height) {
    if (width <= 0 || height <= 0 || width > 16384 || height > 16384) {
      png_fail("figure of " + std::to_string(width) + " x " + std::to_string(height) +
               " pixels, expected 1 .. 16384 each");
    }
    surface_ = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cr_ = cairo_create(surface_);
    if (cairo_status(cr_) != CAIRO_STATUS_SUCCESS) png_fail("cairo could not start");
    color({1, 1, 1});
    cairo_paint(cr_);
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  }
  ~Canvas() {
    cairo_destroy(cr_);
    cairo_surface_destroy(surface_);
  }
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  cairo_t* cr() const { return cr_; }
  void color(const Rgb& c) { cairo_set_source_rgb(cr_, c.r, c.g, c.b); }

  void rect(double x, double y, double w, double h, const Rgb& c) {
    color(c);
    cairo_rectangle(cr_, x, y, w, h);
    cairo_fill(cr_);
  }
  void line(double x0, double y0, double x1, double y1, const Rgb& c, double width = 1.0) {
    color(c);
    cairo_set_line_width(cr_, width);
    cairo_move_to(cr_, x0, y0);
    cairo_line_to(cr_, x1, y1);
    cairo_stroke(cr_);
  }
  double text_width(const std::string& s, double size, bool bold = false) {
    font(size, bold);
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    return e.x_advance;
  }
  // Text with its anchor at (x, y): align 0 left, 0.5 centre, 1 right; y is the baseline.
  void text(const std::string& s, double x, double y, double size, double align = 0.0,
            bool bold = false, const Rgb& c = kInk) {
    const double w = text_width(s, size, bold);
    color(c);
    cairo_move_to(cr_, x - align * w, y);
    cairo_show_text(cr_, s.c_str());
  }
  // Text rotated 90 degrees counter-clockwise, centred on (x, y).
  void vertical_text(const std::string& s, double x, double y, double size) {
    const double w = text_width(s, size);
    cairo_save(cr_);
    cairo_translate(cr_, x, y);
    cairo_rotate(cr_, -M_PI / 2);
    color(kInk);
    cairo_move_to(cr_, -w / 2, 0);
    cairo_show_text(cr_, s.c_str());
    cairo_restore(cr_);
  }
  // A legend entry: a swatch and a label; returns the x after it.
  double legend_item(double x, double y, const Rgb& c, const std::string& label,
                     bool outline = false) {
    rect(x, y - 10, 12, 12, c);
    if (outline) {
      color(kAxis);
      cairo_set_line_width(cr_, 1);
      cairo_rectangle(cr_, x + 0.5, y - 9.5, 11, 11);
      cairo_stroke(cr_);
    }
    text(label, x + 17, y, 12);
    return x + 17 + text_width(label, 12) + 18;
  }

  std::string png_bytes() {
    cairo_surface_flush(surface_);
    std::string out;
    const cairo_status_t st = cairo_surface_write_to_png_stream(
        surface_,
        [](void* closure, const unsigned char* data, unsigned int length) {
          static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
          return CAIRO_STATUS_SUCCESS;
        },
        &out);
    if (st != CAIRO_STATUS_SUCCESS) png_fail(std::string("cairo: ") + cairo_status_to_string(st));
    return out;
  }

 private:
  void font(double size, bool bold) {
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, size);
  }
  cairo_surface_t* surface_ = nullptr;
  cairo_t* cr_ = nullptr;
};

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Tick step of about n ticks over [0, span]: 1, 2 or 5 times a power of ten.
double nice_step(double span, int n) {
  if (!(span > 0)) return 1.0;
  const double raw = span / n, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

std::string tick_label(double v, double step) {
  const int digits = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step)));
  return fixed(v, std::min(digits, 6));
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  if (path.empty()) png_fail("output path is empty");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    // A device or pipe (e.g. /dev/stdout): write through it, every error reported.
    const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) png_fail(path + ": cannot open for writing (" + errno_text(errno) + ")");
    const bool ok = write_all(fd, bytes);
    const int err = errno;
    const bool closed = ::close(fd) == 0;
    if (!ok || !closed) png_fail(path + ": write failed (" + errno_text(ok ? errno : err) + ")");
    return;
  }
  const std::size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmp = dir + "/." + base + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0)
    png_fail(path + ": cannot create a temporary file in " + dir + " (" + errno_text(errno) + ")");
  const bool ok = write_all(fd, bytes);
  int err = errno;
  const bool closed = ::close(fd) == 0;
  if (ok && !closed) err = errno;
  if (!ok || !closed) {
    ::unlink(tmp.c_str());
    png_fail(path + ": write failed (" + errno_text(err) + ")");
  }
  ::chmod(tmp.c_str(), 0644);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    png_fail(path + ": cannot replace (" + errno_text(err) + ")");
  }
}

std::string output_path(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

void check_output_dir(const std::string& dir) {
  std::string probe = (dir.empty() ? std::string(".") : dir) + "/.proxyattn-probe.XXXXXX";
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) png_fail(dir + ": cannot create files in this folder (" + errno_text(errno) + ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string head_caption(const Plan& plan, std::int64_t head, const std::string& prefix) {
  const PlanLayout& l = plan.layout;
  const std::int64_t kv =
      head / std::max<std::int64_t>(1, l.num_qo_heads / std::max<std::int64_t>(1, l.num_kv_heads));
  std::ostringstream os;
  os << prefix << "head " << head << " (KV " << kv << "): budget " << plan.budgets[head]
     << " blocks, density " << fixed(plan.density[head], 2);
  return os.str();
}

BlockPanel block_panel(const Plan& plan, std::int64_t head, const std::string& prefix) {
  const PlanLayout& l = plan.layout;
  if (!(l.batch > 0 && l.num_blocks[0] > 0)) png_fail("block figure: the first sequence is empty");
  if (plan.device != Device::kCPU) png_fail("block figure: needs a host plan");
  if (head < 0 || head >= l.num_qo_heads) {
    png_fail("block figure: head " + std::to_string(head) + ", expected 0 .. " +
             std::to_string(l.num_qo_heads - 1));
  }
  const std::int64_t nb = l.num_blocks[0];
  const std::vector<std::uint8_t> all = plan.to_dense();  // [num_qo_heads, nb, nb] for seq 0 first
  BlockPanel p;
  p.num_blocks = nb;
  p.mask.assign(all.begin() + head * nb * nb, all.begin() + (head + 1) * nb * nb);
  p.caption = head_caption(plan, head, prefix);
  return p;
}

void write_block_figure(const std::string& path, const std::string& title,
                        const std::vector<BlockPanel>& panels, int columns) {
  if (panels.empty()) png_fail("block figure: no panels");
  columns = std::max(1, std::min<int>(columns, static_cast<int>(panels.size())));
  const int rows = static_cast<int>((panels.size() + columns - 1) / columns);
  constexpr double kPanel = 200, kLeft = 44, kCaption = 30, kBelow = 34, kGapX = 30, kTop = 50,
                   kLegend = 44;
  // Captions must fit: widen the cell when a caption is longer than the panel.
  double cell_w = kPanel + kGapX;
  {
    Canvas probe(8, 8);
    for (const BlockPanel& p : panels)
      cell_w = std::max(cell_w, probe.text_width(p.caption, 11) + 16);
  }
  const double cell_h = kCaption + kPanel + kBelow;
  const int width = static_cast<int>(kLeft + columns * cell_w + 10);
  const int height = static_cast<int>(kTop + rows * cell_h + kLegend);
  Canvas c(width, height);
  c.text(title, width / 2.0, 30, 16, 0.5, true);
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const BlockPanel& p = panels[i];
    const std::int64_t nb = p.num_blocks;
    if (nb <= 0 || p.mask.size() != static_cast<std::size_t>(nb * nb)) {
      png_fail("block figure: panel " + std::to_string(i) + " has a mask of " +
               std::to_string(p.mask.size()) + " entries for " + std::to_string(nb) + " blocks");
    }
    const double x0 = kLeft + (i % columns) * cell_w + (cell_w - kGapX - kPanel) / 2,
                 y0 = kTop + (i / columns) * cell_h + kCaption;
    const double cell = kPanel / static_cast<double>(nb);
    c.text(p.caption, x0 + kPanel / 2, y0 - 8, 11, 0.5);
    for (std::int64_t m = 0; m < nb; ++m) {
      for (std::int64_t n = 0; n <= m; ++n) {
        const bool selected = p.mask[m * nb + n] != 0;
        // Overlap by a fraction of a pixel so small cells leave no seams.
        c.rect(x0 + n * cell, y0 + m * cell, cell + 0.3, cell + 0.3,
               selected ? kSelected : kNotSelected);
      }
    }
    c.color(kAxis);
    cairo_set_line_width(c.cr(), 1);
    cairo_rectangle(c.cr(), x0 - 0.5, y0 - 0.5, kPanel + 1, kPanel + 1);
    cairo_stroke(c.cr());
    c.text("0", x0, y0 + kPanel + 12, 10, 0.0);
    c.text(std::to_string(nb - 1), x0 + kPanel, y0 + kPanel + 12, 10, 1.0);
    c.text("key block", x0 + kPanel / 2, y0 + kPanel + 26, 11, 0.5);
    c.text("0", x0 - 4, y0 + 9, 10, 1.0);
    c.text(std::to_string(nb - 1), x0 - 4, y0 + kPanel, 10, 1.0);
    c.vertical_text("query block", x0 - 20, y0 + kPanel / 2, 11);
  }
  double x = kLeft;
  const double y = height - 16;
  x = c.legend_item(x, y, kSelected, "selected block");
  x = c.legend_item(x, y, kNotSelected, "causal block, not selected");
  c.legend_item(x, y, {1, 1, 1}, "above the diagonal (masked)", true);
  write_file_atomic(path, c.png_bytes());
}

void write_density_figure(const std::string& path, const std::string& title,
                          const std::vector<float>& density, std::int64_t num_kv_heads) {
  if (density.empty()) png_fail("density figure: no heads");
  const std::int64_t heads = static_cast<std::int64_t>(density.size());
  if (num_kv_heads < 0 || (num_kv_heads > 0 && heads % num_kv_heads != 0)) {
    png_fail("density figure: " + std::to_string(heads) + " heads and " +
             std::to_string(num_kv_heads) + " KV heads");
  }
  constexpr double kLeft = 70, kTop = 50, kPlotH = 240, kBottom = 80;
  const double bar_w = std::max(6.0, std::min(40.0, 900.0 / heads)), gap = bar_w * 0.35;
  const double plot_w = heads * (bar_w + gap) + gap;
  const int width = static_cast<int>(std::max(kLeft + plot_w + 30, 460.0));
  const int height = static_cast<int>(kTop + kPlotH + kBottom);
  Canvas c(width, height);
  c.text(title, width / 2.0, 28, 15, 0.5, true);
  const double y_base = kTop + kPlotH;
  for (int q = 0; q <= 4; ++q) {
    const double y = y_base - q * kPlotH / 4;
    c.line(kLeft, y, kLeft + plot_w, y, q == 0 ? kAxis : kGrid);
    c.text(fixed(q * 0.25, 2), kLeft - 6, y + 4, 11, 1.0);
  }
  c.line(kLeft, kTop, kLeft, y_base, kAxis);
  const std::int64_t group = num_kv_heads > 0 ? heads / num_kv_heads : 0;
  const std::int64_t label_every =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(24.0 / (bar_w + gap))));
  for (std::int64_t h = 0; h < heads; ++h) {
    const float d = density[static_cast<std::size_t>(h)];
    const double v = std::isfinite(d) ? std::min(1.0, std::max(0.0, static_cast<double>(d))) : 0.0;
    const double x = kLeft + gap + h * (bar_w + gap);
    c.rect(x, y_base - v * kPlotH, bar_w, v * kPlotH, kSelected);
    if (h % label_every == 0) {
      c.text(std::to_string(h), x + bar_w / 2, y_base + 14, 10, 0.5);
      if (group > 0) {
        c.text("kv" + std::to_string(h / group), x + bar_w / 2, y_base + 26, 9, 0.5, false, kAxis);
      }
      if (bar_w >= 22) c.text(fixed(d, 2), x + bar_w / 2, y_base - v * kPlotH - 4, 9, 0.5);
    }
  }
  c.text(group > 0 ? "query head (and its KV head)" : "query head", kLeft + plot_w / 2, y_base + 44,
         12, 0.5);
  c.vertical_text("density", 20, kTop + kPlotH / 2, 12);
  c.legend_item(kLeft, height - 12, kSelected, "density: selected causal blocks / causal blocks");
  write_file_atomic(path, c.png_bytes());
}

void write_line_figure(const std::string& path, const std::string& title,
                       const std::vector<LinePanel>& panels) {
  if (panels.empty()) png_fail("line figure: no panels");
  constexpr double kPanelW = 420, kPanelH = 280, kLeft = 70, kGap = 90, kTop = 70, kBottom = 60;
  double legend_h = 0;
  for (const LinePanel& p : panels)
    legend_h = std::max(legend_h, 18.0 * static_cast<double>(p.series.size()));
  const int width = static_cast<int>(kLeft + panels.size() * (kPanelW + kGap) - kGap + 30);
  const int height = static_cast<int>(kTop + kPanelH + kBottom + legend_h + 10);
  Canvas c(width, height);
  c.text(title, width / 2.0, 28, 15, 0.5, true);
  for (std::size_t pi = 0; pi < panels.size(); ++pi) {
    const LinePanel& p = panels[pi];
    const double x0 = kLeft + pi * (kPanelW + kGap), y0 = kTop, y1 = kTop + kPanelH;
    c.text(p.title, x0 + kPanelW / 2, y0 - 12, 13, 0.5, true);
    double xmin = INFINITY, xmax = -INFINITY, ymin = p.y_from_zero ? 0.0 : INFINITY,
           ymax = -INFINITY;
    std::vector<double> xs;
    for (const Series& s : p.series) {
      for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        xmin = std::min(xmin, s.x[i]);
        xmax = std::max(xmax, s.x[i]);
        xs.push_back(s.x[i]);
        const double hi =
            i < s.hi.size() && std::isfinite(s.hi[i]) ? std::max(s.hi[i], s.y[i]) : s.y[i];
        const double lo =
            i < s.lo.size() && std::isfinite(s.lo[i]) ? std::min(s.lo[i], s.y[i]) : s.y[i];
        ymax = std::max(ymax, hi);
        ymin = std::min(ymin, lo);
      }
    }
    if (xs.empty()) {
      xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    }
    if (xmax <= xmin) {
      xmin -= 1;
      xmax += 1;
    }
    if (ymax <= ymin) ymax = ymin + 1;
    const double ystep = nice_step(ymax - ymin, 5);
    ymin = std::floor(ymin / ystep) * ystep;
    ymax = std::ceil(ymax / ystep) * ystep;
    const double pad = 0.08 * (xmax - xmin);
    const double xa = xmin - pad, xb = xmax + pad;
    auto X = [&](double v) { return x0 + (v - xa) / (xb - xa) * kPanelW; };
    auto Y = [&](double v) { return y1 - (v - ymin) / (ymax - ymin) * kPanelH; };
    for (double v = ymin; v <= ymax + ystep / 2; v += ystep) {
      c.line(x0, Y(v), x0 + kPanelW, Y(v), v == ymin ? kAxis : kGrid);
      c.text(tick_label(v, ystep), x0 - 6, Y(v) + 4, 10, 1.0);
    }
    std::sort(xs.begin(), xs.end());
    xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
    for (double v : xs) {
      c.line(X(v), y1, X(v), y1 + 4, kAxis);
      c.text(fixed(v, 0), X(v), y1 + 16, 10, 0.5);
    }
    c.line(x0, y0, x0, y1, kAxis);
    c.text(p.x_label, x0 + kPanelW / 2, y1 + 36, 12, 0.5);
    c.vertical_text(p.y_label, x0 - 50, y0 + kPanelH / 2, 12);
    for (std::size_t si = 0; si < p.series.size(); ++si) {
      const Series& s = p.series[si];
      const Rgb col = kPalette[si % (sizeof(kPalette) / sizeof(kPalette[0]))];
      const double off = (static_cast<double>(si) - (p.series.size() - 1) / 2.0) * 5.0;  // dodge
      bool started = false;
      c.color(col);
      cairo_set_line_width(c.cr(), 2);
      for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        if (!started)
          cairo_move_to(c.cr(), X(s.x[i]) + off, Y(s.y[i]));
        else
          cairo_line_to(c.cr(), X(s.x[i]) + off, Y(s.y[i]));
        started = true;
      }
      cairo_stroke(c.cr());
      for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        const double x = X(s.x[i]) + off;
        if (i < s.lo.size() && i < s.hi.size() && s.lo[i] <= s.hi[i]) {
          c.line(x, Y(s.lo[i]), x, Y(s.hi[i]), col, 1.5);
          c.line(x - 4, Y(s.lo[i]), x + 4, Y(s.lo[i]), col, 1.5);
          c.line(x - 4, Y(s.hi[i]), x + 4, Y(s.hi[i]), col, 1.5);
        }
        c.color(col);
        cairo_arc(c.cr(), x, Y(s.y[i]), 4, 0, 2 * M_PI);
        cairo_fill(c.cr());
      }
      c.legend_item(x0, y1 + 58 + 18 * static_cast<double>(si), col, s.name);
    }
  }
  write_file_atomic(path, c.png_bytes());
}

// --- `proxyattn plan`
// -------------------------------------------------------------------------------

void write_plan_png(const std::string& path, const Plan& plan, const std::vector<int>& heads) {
  if (heads.empty()) png_fail("--png: no heads to show");
  std::vector<BlockPanel> panels;
  for (int h : heads) panels.push_back(block_panel(plan, h));
  const PlanLayout& l = plan.layout;
  std::ostringstream title;
  title << "Selected blocks, sequence 0 (" << l.num_blocks[0] << " blocks of " << l.block_size
        << " tokens)";
  write_block_figure(path, title.str(), panels,
                     static_cast<int>(std::min<std::size_t>(heads.size(), 4)));
}

}  // namespace proxyattn::cli
