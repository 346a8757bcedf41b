#include "trainer/io/loss_plot.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace maximus::trainer {
namespace {

using Points = std::vector<std::pair<int64_t, double>>;

constexpr double kWidth = 800;
constexpr double kHeight = 480;
constexpr double kLeft = 80;
constexpr double kRight = 620;  // The legend takes the rest.
constexpr double kTop = 50;
constexpr double kBottom = 430;
constexpr int kTargetTicks = 5;
constexpr size_t kMaxLegendChars = 24;

constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

std::string Colour(size_t i) {
  constexpr size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);
  if (i < kPaletteSize) return kPalette[i];
  // Golden-angle hues keep further colours apart.
  return absl::StrFormat("hsl(%d,65%%,40%%)", static_cast<int>(std::fmod(i * 137.508, 360.0)));
}

// Length of the valid UTF-8 sequence (of a character XML allows) starting at
// s[i], or 0.
size_t Utf8Length(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // Allowed range of the second byte.
  if (b0 < 0x80) {
    return 1;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // Overlong.
    if (b0 == 0xED) hi = 0x9F;  // Surrogates.
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  // U+FFFE and U+FFFF are not XML characters.
  if (n == 3 && b0 == 0xEF && byte(i + 1) == 0xBF && byte(i + 2) >= 0xBE) return 0;
  return n;
}

// `s` as XML text or attribute value: markup characters escaped, control
// characters as spaces, invalid UTF-8 as U+FFFD, at most `max_chars`
// characters (then an ellipsis).
std::string XmlEscape(absl::string_view s, size_t max_chars = std::string::npos) {
  std::string out;
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++chars) {
    if (chars == max_chars) {
      out += "\xE2\x80\xA6";  // U+2026
      break;
    }
    const size_t n = Utf8Length(s, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    const char c = s[i++];
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
    }
  }
  return out;
}

struct Axis {
  double lo = 0;
  double hi = 1;
  std::vector<double> ticks;
  double spacing = 0;
};

// Round-number ticks (1, 2 or 5 times a power of ten apart) within [lo, hi],
// as close to kTargetTicks of them as those spacings allow.
void AddTicks(double min_spacing, Axis* axis) {
  const double range = axis->hi - axis->lo;
  if (!std::isfinite(range) || !(range > 0)) return;
  const double base = std::pow(10.0, std::floor(std::log10(range / (kTargetTicks - 1))));
  double best_spacing = 0, best_count = 0;
  for (double multiple : {1.0, 2.0, 5.0, 10.0, 20.0}) {
    const double spacing = std::max(multiple * base, min_spacing);
    if (!std::isfinite(spacing) || !(spacing > 0)) continue;
    const double count = std::floor(axis->hi / spacing) - std::ceil(axis->lo / spacing) + 1;
    if (best_spacing == 0 ||
        std::fabs(count - kTargetTicks) < std::fabs(best_count - kTargetTicks)) {
      best_spacing = spacing;
      best_count = count;
    }
  }
  if (best_spacing == 0 || !(best_count >= 1) || best_count > 4 * kTargetTicks) return;
  axis->spacing = best_spacing;
  const double first = std::ceil(axis->lo / best_spacing);
  for (double k = 0; k < best_count; k += 1) axis->ticks.push_back((first + k) * best_spacing);
}

// Just enough digits to tell ticks `spacing` apart: fixed notation (integers
// for the step axis), exponents only for very large or very small numbers.
std::string TickLabel(double v, const Axis& axis) {
  if (std::fabs(v) < axis.spacing * 1e-9) return "0";
  double max_abs = 0;
  for (double t : axis.ticks) max_abs = std::max(max_abs, std::fabs(t));
  if (max_abs >= 1e9 || axis.spacing < 1e-6) {
    const int digits =
        static_cast<int>(std::floor(std::log10(max_abs)) - std::floor(std::log10(axis.spacing))) +
        1;
    return absl::StrFormat("%.*g", std::clamp(digits, 1, 17), v);
  }
  const int decimals =
      axis.spacing >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(axis.spacing) - 1e-9));
  return absl::StrFormat("%.*f", decimals, v);
}

// Position of v in [lo, hi] as a fraction; halves first so that extreme
// ranges do not overflow.
double Fraction(double v, const Axis& axis) {
  const double span = axis.hi / 2 - axis.lo / 2;
  if (!(span > 0)) return 0.5;
  const double t = (v / 2 - axis.lo / 2) / span;
  return std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.5;
}

double ScreenX(double step, const Axis& x) { return kLeft + Fraction(step, x) * (kRight - kLeft); }
double ScreenY(double value, const Axis& y) {
  return kBottom - Fraction(value, y) * (kBottom - kTop);
}

// Points of a long series thinned to the lowest and highest of each pixel
// column, in their original order.
std::vector<std::pair<double, double>> ScreenPoints(const Points& points, const Axis& x,
                                                    const Axis& y) {
  std::vector<std::pair<double, double>> all;
  for (const auto& [step, value] : points) {
    if (std::isfinite(value)) {
      all.emplace_back(ScreenX(static_cast<double>(step), x), ScreenY(value, y));
    }
  }
  const size_t columns = static_cast<size_t>(kRight - kLeft);
  if (all.size() <= 4 * columns) return all;
  std::vector<std::pair<double, double>> thinned;
  size_t begin = 0;
  while (begin < all.size()) {
    const auto column = [&](size_t i) { return static_cast<long>(all[i].first); };
    size_t end = begin + 1;
    while (end < all.size() && column(end) == column(begin)) ++end;
    size_t low = begin, high = begin;  // Screen y grows downwards.
    for (size_t i = begin; i < end; ++i) {
      if (all[i].second > all[low].second) low = i;
      if (all[i].second < all[high].second) high = i;
    }
    thinned.push_back(all[std::min(low, high)]);
    if (low != high) thinned.push_back(all[std::max(low, high)]);
    begin = end;
  }
  return thinned;
}

}  // namespace

std::string RenderLossPlotSvg(
    const std::map<std::string, std::vector<std::pair<int64_t, double>>>& series,
    const std::vector<std::string>& tags, const std::string& title) {
  std::vector<std::string> drawn = tags;
  if (drawn.empty()) {
    for (const auto& [tag, points] : series) drawn.push_back(tag);
  }

  // Data ranges over the finite points of the drawn tags.
  bool any = false;
  double x_lo = 0, x_hi = 0, y_lo = 0, y_hi = 0;
  for (const std::string& tag : drawn) {
    auto it = series.find(tag);
    if (it == series.end()) continue;
    for (const auto& [step, value] : it->second) {
      if (!std::isfinite(value)) continue;
      const double s = static_cast<double>(step);
      if (!any) {
        x_lo = x_hi = s;
        y_lo = y_hi = value;
        any = true;
      }
      x_lo = std::min(x_lo, s);
      x_hi = std::max(x_hi, s);
      y_lo = std::min(y_lo, value);
      y_hi = std::max(y_hi, value);
    }
  }
  Axis x, y;
  if (any) {
    if (x_hi > x_lo) {
      x.lo = x_lo;
      x.hi = x_hi;
    } else {
      const double d = std::max(1.0, std::fabs(x_lo) * 1e-6);
      x.lo = x_lo - d;
      x.hi = x_hi + d;
    }
    const double pad = y_hi > y_lo                 ? (y_hi / 2 - y_lo / 2) * 0.1
                       : std::fabs(y_lo) > DBL_MIN ? std::fabs(y_lo) * 0.05
                                                   : 1.0;
    y.lo = std::max(y_lo - pad, -DBL_MAX);
    y.hi = std::min(y_hi + pad, DBL_MAX);
    AddTicks(1.0, &x);
    AddTicks(0.0, &y);
  }

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
      kWidth, kHeight, kWidth, kHeight);
  const std::string escaped_title = XmlEscape(title);
  absl::StrAppend(&svg, "<title>", escaped_title, "</title>\n");
  absl::StrAppendFormat(&svg, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", kWidth,
                        kHeight);
  absl::StrAppendFormat(&svg,
                        "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">%s"
                        "</text>\n",
                        (kLeft + kRight) / 2, escaped_title);

  // Grid, ticks and their labels.
  for (double t : x.ticks) {
    const double sx = ScreenX(t, x);
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\" "
                          "stroke=\"#e0e0e0\"/>\n"
                          "<text x=\"%.2f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n",
                          sx, kTop, sx, kBottom, sx, kBottom + 18, TickLabel(t, x));
  }
  for (double t : y.ticks) {
    const double sy = ScreenY(t, y);
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.0f\" y1=\"%.2f\" x2=\"%.0f\" y2=\"%.2f\" "
                          "stroke=\"#e0e0e0\"/>\n"
                          "<text x=\"%.0f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                          kLeft, sy, kRight, sy, kLeft - 6, sy + 4, TickLabel(t, y));
  }
  absl::StrAppendFormat(&svg,
                        "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                        "stroke=\"#333333\"/>\n",
                        kLeft, kTop, kRight - kLeft, kBottom - kTop);
  absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n",
                        (kLeft + kRight) / 2, kHeight - 12);
  absl::StrAppendFormat(&svg,
                        "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" "
                        "transform=\"rotate(-90 18 %.1f)\">loss</text>\n",
                        (kTop + kBottom) / 2, (kTop + kBottom) / 2);
  if (!any) {
    absl::StrAppendFormat(&svg,
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888888\" "
                          "font-size=\"16\">no data</text>\n",
                          (kLeft + kRight) / 2, (kTop + kBottom) / 2);
  }

  // Curves and legend.
  for (size_t i = 0; i < drawn.size(); ++i) {
    const std::string colour = Colour(i);
    auto it = series.find(drawn[i]);
    if (any && it != series.end()) {
      const std::vector<std::pair<double, double>> points = ScreenPoints(it->second, x, y);
      if (!points.empty()) {
        std::string coords;
        for (const auto& [sx, sy] : points) {
          absl::StrAppendFormat(&coords, "%s%.2f,%.2f", coords.empty() ? "" : " ", sx, sy);
        }
        absl::StrAppendFormat(&svg,
                              "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                              "stroke-linejoin=\"round\" points=\"%s\"/>\n",
                              colour, coords);
        if (points.size() == 1) {
          absl::StrAppendFormat(&svg, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                                points[0].first, points[0].second, colour);
        }
      }
    }
    const double ly = kTop + 10 + 20.0 * i;
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                          "stroke-width=\"3\"/>\n"
                          "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                          kRight + 15, ly, kRight + 40, ly, colour, kRight + 46, ly + 4,
                          XmlEscape(drawn[i], kMaxLegendChars));
  }
  svg += "</svg>\n";
  return svg;
}

absl::Status WriteLossPlot(
    const std::string& path,
    const std::map<std::string, std::vector<std::pair<int64_t, double>>>& series,
    const std::vector<std::string>& tags, const std::string& title) {
  const std::string svg = RenderLossPlotSvg(series, tags, title);
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("create ", tmp, ": ", std::strerror(errno)));
  }
  bool ok = std::fwrite(svg.data(), 1, svg.size(), f) == svg.size() && std::fflush(f) == 0 &&
            ::fsync(fileno(f)) == 0;
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string error = std::strerror(errno);
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("write ", path, ": ", error));
  }
  return absl::OkStatus();
}

}  // namespace maximus::trainer
