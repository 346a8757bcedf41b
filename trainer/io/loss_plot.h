// A loss curve as a self-contained SVG (no scripts, fonts or other files), so
// a run directory shows its progress without TensorBoard: open it in any
// browser.

#ifndef MAXIMUS_TRAINER_IO_LOSS_PLOT_H_
#define MAXIMUS_TRAINER_IO_LOSS_PLOT_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace maximus::trainer {

// Draws `tags` of `series` (tag -> (step, value) points, as
// MetricsWriter::series() gives them; all of them when `tags` is empty), in
// that order: one polyline per tag that has a finite value, in distinct
// colours, over linear axes with about five round-number ticks each. The y
// range is the finite values' with 5% padding; non-finite values are left out.
// Series longer than the plot is wide keep each pixel column's lowest and
// highest point, so spikes stay visible. A legend lists every requested tag;
// with no finite point at all, the axes say "no data". All text is escaped
// (and made valid UTF-8) for XML.
std::string RenderLossPlotSvg(
    const std::map<std::string, std::vector<std::pair<int64_t, double>>>& series,
    const std::vector<std::string>& tags, const std::string& title);

// RenderLossPlotSvg written to `path` through a temporary file and a rename,
// so a reader never sees half a plot.
absl::Status WriteLossPlot(
    const std::string& path,
    const std::map<std::string, std::vector<std::pair<int64_t, double>>>& series,
    const std::vector<std::string>& tags, const std::string& title);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_IO_LOSS_PLOT_H_
