// tools/proxyattn/png.h: the command line's figures (cairo) and atomic output files.
//
// Every figure has a title, axis labels, captions and a legend. Every file is written to a
// temporary file in the destination's folder and renamed over the destination only after a
// complete write and a successful close; on any error the temporary file is removed, the
// destination is untouched and proxyattn::Error names the path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxyattn/plan.h"

namespace proxyattn::cli {

/// \brief Writes bytes to path atomically (temporary file in the same folder, then rename).
void write_file_atomic(const std::string& path, const std::string& bytes);

/// \brief dir/name, where an empty dir is the current folder (as check_output_dir() reads it),
/// never the root: "" + "/name" would be "/name".
std::string output_path(const std::string& dir, const std::string& name);

/// \brief Throws Error unless a file can be created in dir (checked before long work, so that a
/// bad --out fails at once; the probe file is removed).
void check_output_dir(const std::string& dir);

/// \brief One panel of a block-selection figure: the selected blocks of one head of sequence 0.
struct BlockPanel {
  std::vector<std::uint8_t> mask;  // [nb, nb] 0/1, query blocks down, key blocks across
  std::int64_t num_blocks = 0;     ///< nb
  std::string caption;             ///< e.g. "layer 7 head 2 (KV 1): budget 12 blocks, density 0.31"
};

/// \brief The caption of head h of a host plan's sequence 0: head, KV head, budget, density.
std::string head_caption(const Plan& plan, std::int64_t head, const std::string& prefix = "");
/// \brief The panel of head h of a host plan's sequence 0.
BlockPanel block_panel(const Plan& plan, std::int64_t head, const std::string& prefix = "");

/// \brief Block-selection panels in a grid with the given number of columns, a title, axis labels
/// (key block across, query block down), a caption per panel and a legend (selected, causal not
/// selected, above the diagonal).
void write_block_figure(const std::string& path, const std::string& title,
                        const std::vector<BlockPanel>& panels, int columns);

/// \brief A bar chart of per-head density: title, axes, one labelled bar per head (with its KV
/// head when num_kv_heads > 0), a legend.
void write_density_figure(const std::string& path, const std::string& title,
                          const std::vector<float>& density, std::int64_t num_kv_heads);

/// \brief One line of a line chart: a name for the legend and (x, y) points; y may carry a
/// symmetric interval (lo, hi) drawn as whiskers when lo <= hi.
struct Series {
  std::string name;
  std::vector<double> x, y, lo, hi;
};

/// \brief One panel of a line chart.
struct LinePanel {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool y_from_zero = true;
};

/// \brief Panels side by side under one title, each with axes, ticks, labels and a legend.
void write_line_figure(const std::string& path, const std::string& title,
                       const std::vector<LinePanel>& panels);

}  // namespace proxyattn::cli
