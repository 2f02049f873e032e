// tools/proxyattn/plan_cmd.cc: `proxyattn plan`, budgets and density per head, the selected
// blocks as JSON and, with --png, as a heatmap.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <system_error>
#include <sstream>

#include "tools/proxyattn/cli.h"
#include "tools/proxyattn/png.h"

namespace proxyattn::cli {

namespace {

std::vector<int> parse_heads(const std::string& list, std::int64_t num_heads) {
  std::vector<int> heads;
  if (list.empty()) {
    for (std::int64_t h = 0; h < std::min<std::int64_t>(num_heads, 4); ++h) heads.push_back(static_cast<int>(h));
    return heads;
  }
  // Every comma-separated item whole: "1x", " 1", "", "-0" and "0x3" are errors, not 1 or 0.
  std::size_t begin = 0;
  while (true) {
    const std::size_t end = std::min(list.find(',', begin), list.size());
    const std::string item = list.substr(begin, end - begin);
    heads.push_back(static_cast<int>(parse_int_flag("--show-heads item", item, 0, num_heads - 1)));
    if (end == list.size()) break;
    begin = end + 1;
  }
  return heads;
}

}  // namespace

int run_plan(const CommonOptions& o, const std::string& png, const std::string& show_heads,
             const std::string& density_png) {
  const Config config = o.config();
  // Outputs are checked before the work (the writers themselves write atomically).
  for (const std::string* path : {&png, &density_png}) {
    if (path->empty()) continue;
    const std::filesystem::path parent = std::filesystem::path(*path).parent_path();
    std::error_code error;
    if (!parent.empty() && !std::filesystem::is_directory(parent, error)) {
      fail("output '", printable(*path, 256), "': folder '", printable(parent.string(), 256),
           "' does not exist");
    }
    const std::filesystem::file_status status = std::filesystem::symlink_status(*path, error);
    if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
      // A folder, a device such as /dev/full, a link: a rename over it would destroy it.
      fail("output '", printable(*path, 256), "' exists and is not a regular file");
    }
  }
  if (!png.empty() && png == density_png) {
    fail("--png and --density-png name the same file '", printable(png, 256), "'");
  }
  if (png.empty() && !show_heads.empty()) fail("--show-heads needs --png");
  Inputs in;
  load_inputs(o, in);
  const std::vector<int> heads = parse_heads(show_heads, in.host.spec.num_qo_heads);
  const Runtime runtime = o.runtime();
  const ProblemShape shape = problem_shape(in.q(), in.k(), in.host.seqlens());
  Buffer ws(workspace_size(shape, config), in.device);
  progress("plan");
  const Plan p = plan(in.q(), in.k(), in.host.seqlens(), config, ws.workspace(), runtime);
  progress("");
  const HostPlan hp = copy_to_host(p);
  const PlanLayout& l = hp.plan.layout;
  const std::int64_t H = l.num_qo_heads, nb = l.batch > 0 ? l.num_blocks[0] : 0;
  std::printf("proxyattn plan: %s, heads %lld/%lld, block %d, gamma %g, last block %s (sequence 0, %lld blocks)\n",
              in.description.c_str(), static_cast<long long>(H), static_cast<long long>(l.num_kv_heads),
              config.block_size, config.gamma, to_string(config.last_block_selection),
              static_cast<long long>(nb));
  std::printf("  %5s %8s %14s %14s %9s\n", "head", "kv head", "budget blocks", "budget tokens", "density");
  nlohmann::json budgets = nlohmann::json::array(), density = nlohmann::json::array(),
                 blocks = nlohmann::json::array();
  for (std::int64_t h = 0; h < H; ++h) {
    const std::int32_t b = l.batch > 0 ? hp.plan.budgets[h] : 0;
    const float d = l.batch > 0 ? hp.plan.density[h] : 1.0f;
    std::printf("  %5lld %8lld %14d %14lld %9.4f\n", static_cast<long long>(h),
                static_cast<long long>(h / (H / l.num_kv_heads)), b,
                static_cast<long long>(b) * config.block_size, d);
    budgets.push_back(b);
    density.push_back(d);
    nlohmann::json rows = nlohmann::json::array();
    for (std::int64_t m = 0; m < nb; ++m) {
      const BlockIndex* order = hp.plan.row_order(0, h, m);
      std::vector<int> row(order, order + hp.plan.counts[l.head_index(0, h, m)]);
      std::sort(row.begin(), row.end());
      rows.push_back(row);
    }
    blocks.push_back(rows);
  }
  const Plan::Stats stats = hp.plan.stats();
  std::printf("  density (weighted by causal blocks): %.4f\n", stats.density_weighted);
  if (!png.empty()) {
    write_plan_png(png, hp.plan, heads);
    std::printf("  wrote %s (heads", printable(png, 256).c_str());
    for (int h : heads) std::printf(" %d", h);
    std::printf(")\n");
  }
  if (!density_png.empty()) {
    write_density_figure(density_png, "Density per query head, sequence 0",
                         std::vector<float>(hp.plan.density, hp.plan.density + H),
                         hp.plan.layout.num_kv_heads);
    std::printf("  wrote %s (density of heads 0 .. %lld, sequence 0)\n",
                printable(density_png, 256).c_str(),
                static_cast<long long>(H - 1));
  }
  if (o.json) {
    nlohmann::json j;
    j["budgets"] = budgets;
    j["density"] = density;
    j["blocks"] = blocks;
    j["density_weighted"] = stats.density_weighted;
    j["seq_len"] = in.host.total_tokens;
    j["backend"] = o.backend;
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace proxyattn::cli
