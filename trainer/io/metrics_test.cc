#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/io/loss_plot.h"
#include "trainer/io/metrics_writer.h"
#include "trainer/io/tensorboard_event.pb.h"

namespace maximus::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Written here bit by bit, independent of the library's table-driven one.
uint32_t BitwiseCrc32c(absl::string_view data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t MaskedCrc(absl::string_view data) {
  const uint32_t crc = BitwiseCrc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

uint64_t LittleEndian(absl::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  return v;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/metrics_test_", name);
  fs::remove_all(dir);
  return dir;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteAll(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

std::vector<std::string> EventFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, "events.out.tfevents.")) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

double LossAt(int64_t step) { return 10.0 / (1.0 + static_cast<double>(step)); }

// Steps 1..10 of three tags.
const std::vector<std::string> kTags = {"train/loss", "train/lr", "train/grad_norm"};
double ValueOf(size_t tag, int64_t step) {
  return tag == 0 ? LossAt(step) : tag == 1 ? 1e-3 * step : 0.5 + 0.25 * step;
}

void WriteTenSteps(const std::string& dir) {
  auto writer = MetricsWriter::Open(dir);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (int64_t step = 1; step <= 10; ++step) {
    for (size_t t = 0; t < kTags.size(); ++t) {
      ASSERT_TRUE((*writer)->AddScalar(step, kTags[t], ValueOf(t, step)).ok());
    }
    ASSERT_TRUE((*writer)->Flush().ok());
  }
  ASSERT_TRUE((*writer)->Close().ok());
}

TEST(MetricsWriterTest, EventFileReadsBackEveryField) {
  const std::string dir = FreshDir("events");
  WriteTenSteps(dir);
  const std::vector<std::string> files = EventFiles(dir);
  ASSERT_EQ(files.size(), 1u);

  // events.out.tfevents.<unix seconds>.<hostname>
  const std::string name = fs::path(files[0]).filename().string();
  const std::vector<std::string> parts = absl::StrSplit(
      name.substr(std::string("events.out.tfevents.").size()), absl::MaxSplits('.', 1));
  ASSERT_EQ(parts.size(), 2u) << name;
  int64_t seconds;
  ASSERT_TRUE(absl::SimpleAtoi(parts[0], &seconds)) << name;
  EXPECT_GT(seconds, 1600000000);
  EXPECT_FALSE(parts[1].empty());

  auto events = ReadEventFile(files[0]);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u + 10 * kTags.size());
  const tensorflow::Event& first = (*events)[0];
  EXPECT_EQ(first.what_case(), tensorflow::Event::kFileVersion);
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  EXPECT_GE(first.wall_time(), static_cast<double>(seconds));
  EXPECT_LT(first.wall_time(), static_cast<double>(seconds) + 60);

  size_t i = 1;
  double last_wall_time = first.wall_time();
  for (int64_t step = 1; step <= 10; ++step) {
    for (size_t t = 0; t < kTags.size(); ++t, ++i) {
      const tensorflow::Event& e = (*events)[i];
      EXPECT_GE(e.wall_time(), last_wall_time);
      last_wall_time = e.wall_time();
      EXPECT_EQ(e.step(), step);
      ASSERT_EQ(e.what_case(), tensorflow::Event::kSummary);
      ASSERT_EQ(e.summary().value_size(), 1);
      const tensorflow::Summary::Value& v = e.summary().value(0);
      EXPECT_EQ(v.tag(), kTags[t]);
      ASSERT_EQ(v.value_case(), tensorflow::Summary::Value::kSimpleValue);
      EXPECT_EQ(v.simple_value(), static_cast<float>(ValueOf(t, step)));
    }
  }
}

TEST(MetricsWriterTest, ZeroIsWrittenAsAValue) {
  const std::string dir = FreshDir("zero");
  {
    auto writer = MetricsWriter::Open(dir);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->AddScalar(0, "loss", 0.0).ok());
  }  // The destructor closes.
  auto events = ReadEventFile(EventFiles(dir)[0]);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  // proto3 would drop a plain 0.0 float; TensorBoard needs the field present.
  EXPECT_EQ((*events)[1].summary().value(0).value_case(), tensorflow::Summary::Value::kSimpleValue);
}

TEST(MetricsWriterTest, RecordFramingIsTfRecord) {
  ASSERT_EQ(BitwiseCrc32c("123456789"), 0xE3069283u);

  const std::string record = FrameTfRecord("123456789");
  ASSERT_EQ(record.size(), 8u + 4 + 9 + 4);
  EXPECT_EQ(record.substr(0, 8), std::string("\x09\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(LittleEndian(record.substr(8, 4)), MaskedCrc(record.substr(0, 8)));
  EXPECT_EQ(record.substr(12, 9), "123456789");
  const uint32_t crc = 0xE3069283u;
  EXPECT_EQ(LittleEndian(record.substr(21, 4)), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);

  // The first record of a written file.
  const std::string dir = FreshDir("framing");
  WriteTenSteps(dir);
  const std::string bytes = ReadAll(EventFiles(dir)[0]);
  ASSERT_GE(bytes.size(), 12u);
  const uint64_t length = LittleEndian(bytes.substr(0, 8));
  ASSERT_GE(bytes.size(), 12 + length + 4);
  EXPECT_EQ(LittleEndian(bytes.substr(8, 4)), MaskedCrc(bytes.substr(0, 8)));
  const std::string data = bytes.substr(12, length);
  EXPECT_EQ(LittleEndian(bytes.substr(12 + length, 4)), MaskedCrc(data));
  tensorflow::Event event;
  ASSERT_TRUE(event.ParseFromString(data));
  EXPECT_EQ(event.file_version(), "brain.Event:2");
}

TEST(MetricsWriterTest, CorruptionIsDataLossNamingTheOffset) {
  const std::string dir = FreshDir("corrupt");
  WriteTenSteps(dir);
  const std::string path = EventFiles(dir)[0];
  const std::string good = ReadAll(path);
  const size_t second = 12 + LittleEndian(good.substr(0, 8)) + 4;

  for (size_t at : {size_t{3}, size_t{9}, second + 2, second + 14, good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 0x20;
    WriteAll(path, bad);
    auto events = ReadEventFile(path);
    ASSERT_FALSE(events.ok()) << "byte " << at;
    EXPECT_EQ(events.status().code(), absl::StatusCode::kDataLoss) << events.status();
    EXPECT_THAT(events.status().message(), HasSubstr("offset")) << events.status();
  }
  std::string bad = good;
  bad[second + 14] ^= 0x20;
  WriteAll(path, bad);
  EXPECT_THAT(std::string(ReadEventFile(path).status().message()),
              HasSubstr(absl::StrCat("offset ", second)));
}

TEST(MetricsWriterTest, TruncationIsDataLoss) {
  const std::string dir = FreshDir("truncated");
  WriteTenSteps(dir);
  const std::string path = EventFiles(dir)[0];
  const std::string good = ReadAll(path);
  for (size_t keep : {good.size() - 1, good.size() - 4, good.size() - 10, size_t{5}}) {
    WriteAll(path, good.substr(0, keep));
    auto events = ReadEventFile(path);
    ASSERT_FALSE(events.ok()) << keep;
    EXPECT_EQ(events.status().code(), absl::StatusCode::kDataLoss) << events.status();
  }
  WriteAll(path, "");
  auto events = ReadEventFile(path);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty());
  EXPECT_EQ(ReadEventFile(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(MetricsWriterTest, CsvContentIsExact) {
  const std::string dir = FreshDir("csv");
  const std::vector<std::pair<std::string, double>> step1 = {
      {"loss", 0.1}, {"lr", 1e-07}, {"a,\"b\"", -2.5}};
  const std::vector<std::pair<std::string, double>> step2 = {
      {"loss", 2.0 / 3.0}, {"lr", 3.0}, {"nan", std::nan("")}, {"inf", -HUGE_VAL}};
  {
    auto writer = MetricsWriter::Open(dir);
    ASSERT_TRUE(writer.ok());
    for (const auto& [tag, value] : step1) ASSERT_TRUE((*writer)->AddScalar(1, tag, value).ok());
    for (const auto& [tag, value] : step2) ASSERT_TRUE((*writer)->AddScalar(2, tag, value).ok());
    ASSERT_TRUE((*writer)->Close().ok());
    EXPECT_EQ((*writer)->AddScalar(3, "loss", 1).code(), absl::StatusCode::kFailedPrecondition);
  }
  auto events = ReadEventFile(EventFiles(dir)[0]);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 8u);
  const std::vector<std::string> rows = {"1,%s,loss,0.1",
                                         "1,%s,lr,1e-07",
                                         "1,%s,\"a,\"\"b\"\"\",-2.5",
                                         "2,%s,loss,0.6666666666666666",
                                         "2,%s,lr,3",
                                         "2,%s,nan,nan",
                                         "2,%s,inf,-inf"};
  std::string expected = "step,wall_seconds,tag,value\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string wall = absl::StrFormat("%.6f", (*events)[i + 1].wall_time());
    absl::StrAppend(&expected, absl::StrReplaceAll(rows[i], {{"%s", wall}}), "\n");
  }
  EXPECT_EQ(ReadAll(dir + "/metrics.csv"), expected);
  EXPECT_EQ((*events)[3].summary().value(0).tag(), "a,\"b\"");

  // Reading it back (appending) recovers every value, NaN and quotes included.
  auto again = MetricsWriter::Open(dir);
  ASSERT_TRUE(again.ok()) << again.status();
  const ScalarSeries& series = (*again)->series();
  ASSERT_EQ(series.size(), 5u);
  EXPECT_EQ(series.at("loss"), (std::vector<std::pair<int64_t, double>>{{1, 0.1}, {2, 2.0 / 3.0}}));
  EXPECT_EQ(series.at("a,\"b\"")[0].second, -2.5);
  EXPECT_TRUE(std::isnan(series.at("nan")[0].second));
  EXPECT_EQ(series.at("inf")[0].second, -HUGE_VAL);
  EXPECT_EQ(ReadAll(dir + "/metrics.csv"), expected);
}

TEST(MetricsWriterTest, ResumeDropsLaterStepsAndAppends) {
  const std::string dir = FreshDir("resume");
  WriteTenSteps(dir);
  const std::string before = ReadAll(dir + "/metrics.csv");
  const std::vector<std::string> lines = absl::StrSplit(before, '\n');
  ASSERT_EQ(lines.size(), 1 + 30 + 1u);  // Header, rows, the empty piece after the last '\n'.

  {
    auto writer = MetricsWriter::Open(dir, /*resume_step=*/5);
    ASSERT_TRUE(writer.ok()) << writer.status();
    for (size_t t = 0; t < kTags.size(); ++t) {
      const auto& points = (*writer)->series().at(kTags[t]);
      ASSERT_EQ(points.size(), 5u);
      for (int64_t step = 1; step <= 5; ++step) {
        EXPECT_EQ(points[step - 1], std::make_pair(step, ValueOf(t, step)));
      }
    }
    for (int64_t step = 6; step <= 8; ++step) {
      ASSERT_TRUE((*writer)->AddScalar(step, "train/loss", -1.0 * step).ok());
    }
    ASSERT_TRUE((*writer)->Close().ok());
    const auto& loss = (*writer)->series().at("train/loss");
    ASSERT_EQ(loss.size(), 8u);
    EXPECT_EQ(loss[7], std::make_pair(int64_t{8}, -8.0));
  }

  // The kept rows are the old lines, byte for byte; each step appears once.
  const std::vector<std::string> after = absl::StrSplit(ReadAll(dir + "/metrics.csv"), '\n');
  ASSERT_EQ(after.size(), 1 + 15 + 3 + 1u);
  for (size_t i = 0; i <= 15; ++i) EXPECT_EQ(after[i], lines[i]);
  for (int64_t step = 6; step <= 8; ++step) {
    EXPECT_TRUE(absl::StartsWith(after[15 + step - 5], absl::StrCat(step, ",")));
    EXPECT_TRUE(absl::EndsWith(after[15 + step - 5], absl::StrCat(",train/loss,-", step)));
  }
  EXPECT_EQ(after.back(), "");

  // A second event file: version, SessionLog START after the resumed step, scalars.
  const std::vector<std::string> files = EventFiles(dir);
  ASSERT_EQ(files.size(), 2u);
  std::vector<tensorflow::Event> events;
  for (const std::string& file : files) {
    auto read = ReadEventFile(file);
    ASSERT_TRUE(read.ok()) << read.status();
    if (read->size() == 5) events = *read;
  }
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  ASSERT_EQ(events[1].what_case(), tensorflow::Event::kSessionLog);
  EXPECT_EQ(events[1].session_log().status(), tensorflow::SessionLog::START);
  EXPECT_EQ(events[1].step(), 6);
  for (int64_t step = 6; step <= 8; ++step) {
    const tensorflow::Event& e = events[step - 4];
    EXPECT_EQ(e.step(), step);
    EXPECT_EQ(e.summary().value(0).tag(), "train/loss");
    EXPECT_EQ(e.summary().value(0).simple_value(), -1.0f * step);
  }
}

TEST(MetricsWriterTest, OpenWithoutResumeStepKeepsEveryRow) {
  const std::string dir = FreshDir("append");
  WriteTenSteps(dir);
  const std::string before = ReadAll(dir + "/metrics.csv");
  auto writer = MetricsWriter::Open(dir);
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ((*writer)->series().at("train/lr").size(), 10u);
  ASSERT_TRUE((*writer)->AddScalar(11, "train/lr", 0.5).ok());
  ASSERT_TRUE((*writer)->Flush().ok());
  const std::string after = ReadAll(dir + "/metrics.csv");
  EXPECT_TRUE(absl::StartsWith(after, before));
  EXPECT_TRUE(absl::EndsWith(after, ",train/lr,0.5\n")) << after;
}

TEST(MetricsWriterTest, TornLastCsvLineIsDropped) {
  const std::string dir = FreshDir("torn");
  fs::create_directories(dir);
  WriteAll(dir + "/metrics.csv", "step,wall_seconds,tag,value\n1,1.5,loss,2\n2,1.6,lo");
  auto writer = MetricsWriter::Open(dir);
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_EQ((*writer)->series().at("loss").size(), 1u);
  EXPECT_EQ(ReadAll(dir + "/metrics.csv"), "step,wall_seconds,tag,value\n1,1.5,loss,2\n");

  const std::string torn_header = FreshDir("torn_header");
  fs::create_directories(torn_header);
  WriteAll(torn_header + "/metrics.csv", "step,wall");
  ASSERT_TRUE(MetricsWriter::Open(torn_header).ok());
  EXPECT_EQ(ReadAll(torn_header + "/metrics.csv"), "step,wall_seconds,tag,value\n");
}

TEST(MetricsWriterTest, RejectsForeignCsvAndBadTags) {
  const std::string dir = FreshDir("foreign");
  fs::create_directories(dir);
  WriteAll(dir + "/metrics.csv", "epoch,loss\n1,2\n");
  EXPECT_EQ(MetricsWriter::Open(dir).status().code(), absl::StatusCode::kFailedPrecondition);
  WriteAll(dir + "/metrics.csv", "step,wall_seconds,tag,value\n1,x,loss,2\n");
  auto malformed = MetricsWriter::Open(dir);
  EXPECT_EQ(malformed.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(malformed.status().message(), HasSubstr("line 2"));

  const std::string ok_dir = FreshDir("bad_tags");
  auto writer = MetricsWriter::Open(ok_dir);
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ((*writer)->AddScalar(1, "", 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*writer)->AddScalar(1, "a\nb", 1).code(), absl::StatusCode::kInvalidArgument);
}

// --- Loss plot ---------------------------------------------------------------

// A small XML well-formedness check: one root, balanced tags, quoted
// attributes, only the predefined or numeric entities, no stray '<'.
bool IsWellFormedXml(const std::string& s, std::string* why) {
  std::vector<std::string> open;
  int roots = 0;
  const auto entity_ok = [&](size_t i) {
    const size_t end = s.find(';', i);
    if (end == std::string::npos || end - i > 10) return false;
    const std::string e = s.substr(i, end - i + 1);
    return e == "&lt;" || e == "&gt;" || e == "&amp;" || e == "&quot;" || e == "&apos;" ||
           absl::StartsWith(e, "&#");
  };
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '<') {
      if (s.compare(i, 4, "<!--") == 0) {
        i = s.find("-->", i);
        if (i == std::string::npos) return *why = "unterminated comment", false;
        i += 3;
        continue;
      }
      const bool closing = s[i + 1] == '/';
      size_t j = i + (closing ? 2 : 1);
      const size_t name_begin = j;
      while (j < s.size() && (absl::ascii_isalnum(s[j]) || s[j] == '-' || s[j] == ':')) ++j;
      const std::string name = s.substr(name_begin, j - name_begin);
      if (name.empty()) return *why = absl::StrCat("bad tag at ", i), false;
      char quote = 0;
      for (; j < s.size(); ++j) {
        if (quote != 0) {
          if (s[j] == quote)
            quote = 0;
          else if (s[j] == '<')
            return *why = absl::StrCat("'<' in an attribute at ", j), false;
          else if (s[j] == '&' && !entity_ok(j))
            return *why = absl::StrCat("entity at ", j), false;
        } else if (s[j] == '"' || s[j] == '\'') {
          quote = s[j];
        } else if (s[j] == '>') {
          break;
        }
      }
      if (j >= s.size()) return *why = absl::StrCat("unterminated tag at ", i), false;
      if (closing) {
        if (open.empty() || open.back() != name) {
          return *why = absl::StrCat("</", name, "> does not close the open tag"), false;
        }
        open.pop_back();
      } else if (s[j - 1] != '/') {
        if (open.empty() && ++roots > 1) return *why = "two roots", false;
        open.push_back(name);
      } else if (open.empty()) {
        return *why = "empty element outside the root", false;
      }
      i = j + 1;
    } else {
      if (open.empty() && !absl::ascii_isspace(s[i])) return *why = "text outside root", false;
      if (s[i] == '&' && !entity_ok(i)) return *why = absl::StrCat("entity at ", i), false;
      ++i;
    }
  }
  if (!open.empty()) return *why = absl::StrCat("<", open.back(), "> left open"), false;
  if (roots != 1) return *why = "no root", false;
  return true;
}

int CountOf(const std::string& s, const std::string& what) {
  int count = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++count;
  return count;
}

// The point counts of each polyline, in order.
std::vector<size_t> PolylinePointCounts(const std::string& svg) {
  std::vector<size_t> counts;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    const size_t begin = svg.find("points=\"", at) + 8;
    const std::string points = svg.substr(begin, svg.find('"', begin) - begin);
    counts.push_back(std::vector<std::string>(absl::StrSplit(points, ' ')).size());
  }
  return counts;
}

// The y screen coordinates of the first polyline.
std::vector<double> FirstPolylineYs(const std::string& svg) {
  std::vector<double> ys;
  const size_t begin = svg.find("points=\"", svg.find("<polyline")) + 8;
  for (absl::string_view point :
       absl::StrSplit(svg.substr(begin, svg.find('"', begin) - begin), ' ')) {
    double y;
    EXPECT_TRUE(absl::SimpleAtod(point.substr(point.find(',') + 1), &y)) << point;
    ys.push_back(y);
  }
  return ys;
}

void ExpectSvg(const std::string& svg) {
  std::string why;
  EXPECT_TRUE(IsWellFormedXml(svg, &why)) << why << "\n" << svg;
  EXPECT_TRUE(absl::StartsWith(svg, "<svg")) << svg.substr(0, 80);
  EXPECT_TRUE(absl::EndsWith(absl::StripTrailingAsciiWhitespace(svg), "</svg>"));
  EXPECT_FALSE(absl::StrContains(svg, "<script"));
  EXPECT_FALSE(absl::StrContains(svg, "nan"));
  EXPECT_FALSE(absl::StrContains(svg, "inf"));
}

TEST(LossPlotTest, OnePolylinePerTagWithEveryPoint) {
  ScalarSeries series;
  for (int64_t step = 0; step <= 1000; step += 100) series["loss"].emplace_back(step, LossAt(step));
  for (int64_t step = 0; step <= 1000; step += 200) series["val_loss"].emplace_back(step, 3.0);
  series["single"].emplace_back(500, 2.0);
  series["not drawn"].emplace_back(1, 100.0);

  const std::string svg =
      RenderLossPlotSvg(series, {"loss", "val_loss", "single"}, "270m <MAXIS> & \"CE\"");
  ExpectSvg(svg);
  EXPECT_EQ(PolylinePointCounts(svg), (std::vector<size_t>{11, 6, 1}));
  EXPECT_THAT(svg, HasSubstr(">270m &lt;MAXIS&gt; &amp; &quot;CE&quot;</text>"));
  EXPECT_FALSE(absl::StrContains(svg, "<MAXIS>"));
  EXPECT_FALSE(absl::StrContains(svg, "not drawn"));
  // Distinct colours, a legend entry and a marker for the lone point.
  EXPECT_THAT(svg, HasSubstr("stroke=\"#1f77b4\" stroke-width=\"1.5\""));
  EXPECT_THAT(svg, HasSubstr("stroke=\"#ff7f0e\" stroke-width=\"1.5\""));
  EXPECT_THAT(svg, HasSubstr("stroke=\"#2ca02c\" stroke-width=\"1.5\""));
  EXPECT_THAT(svg, HasSubstr(">val_loss</text>"));
  EXPECT_THAT(svg, HasSubstr("<circle"));
  // Round x ticks over 0..1000.
  for (int tick : {0, 200, 400, 600, 800, 1000}) {
    EXPECT_THAT(svg, HasSubstr(absl::StrCat(">", tick, "</text>")));
  }
  // The y range is the data's with 5% padding: the top point sits 1/22 of the
  // plot height below the frame.
  const std::vector<double> ys = FirstPolylineYs(svg);
  EXPECT_NEAR(ys[0], 50 + 380.0 / 22, 0.01);  // loss(0) = 10 is the maximum.

  // Empty tags: every series.
  EXPECT_EQ(PolylinePointCounts(RenderLossPlotSvg(series, {}, "all")).size(), 4u);
}

TEST(LossPlotTest, EmptySeriesDrawsAxesAndNoData) {
  for (const std::string& svg :
       {RenderLossPlotSvg({}, {}, "empty"),
        RenderLossPlotSvg({{"loss", {}}}, {"loss", "missing"}, "none"),
        RenderLossPlotSvg({{"loss", {{1, std::nan("")}}}}, {}, "non-finite")}) {
    ExpectSvg(svg);
    EXPECT_THAT(svg, HasSubstr(">no data</text>"));
    EXPECT_TRUE(PolylinePointCounts(svg).empty());
    EXPECT_THAT(svg, HasSubstr("<rect x="));
  }
}

TEST(LossPlotTest, NonFiniteValuesAreLeftOut) {
  ScalarSeries series;
  series["loss"] = {{1, 4.0}, {2, std::nan("")}, {3, HUGE_VAL}, {4, 2.0}, {5, -HUGE_VAL}};
  const std::string svg = RenderLossPlotSvg(series, {"loss"}, "loss");
  ExpectSvg(svg);
  EXPECT_EQ(PolylinePointCounts(svg), (std::vector<size_t>{2}));
}

TEST(LossPlotTest, TickLabelsAreRoundNumbers) {
  ScalarSeries series;
  for (int64_t step = 0; step <= 20; ++step) {
    series["loss"].emplace_back(1000000 + 50000 * step, 2.3 + 0.01 * step);
  }
  const std::string svg = RenderLossPlotSvg(series, {}, "ticks");
  ExpectSvg(svg);
  for (absl::string_view label : {">1000000</text>", ">1200000</text>", ">2000000</text>",
                                  ">2.30</text>", ">2.35</text>", ">2.50</text>"}) {
    EXPECT_THAT(svg, HasSubstr(label));
  }
  EXPECT_FALSE(absl::StrContains(svg, "e+"));

  // About five ticks on each axis, whatever the ranges.
  for (double y_range : {0.01, 0.3, 1.0, 3.1, 11.2, 47.0, 1e5}) {
    for (int64_t steps : {int64_t{2}, int64_t{7}, int64_t{999}, int64_t{31415}, int64_t{1} << 40}) {
      ScalarSeries ramp = {{"loss", {{0, 2.0}, {steps, 2.0 + y_range}}}};
      const std::string plot = RenderLossPlotSvg(ramp, {}, "ramp");
      const int y_ticks = CountOf(plot, "text-anchor=\"end\"");
      const int x_ticks = CountOf(plot, "y=\"448\"");
      EXPECT_GE(y_ticks, 4) << y_range;
      EXPECT_LE(y_ticks, 7) << y_range;
      EXPECT_GE(x_ticks, steps < 4 ? 3 : 4) << steps;
      EXPECT_LE(x_ticks, 7) << steps;
    }
  }
}

TEST(LossPlotTest, HugeStepsAndValues) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  ScalarSeries series;
  series["a"] = {{kMax - 3000000000000, 1e300}, {kMax, -1e300}};
  series["b"] = {{kMax, 5.0}};
  series["c"] = {{std::numeric_limits<int64_t>::min(), 1.0}, {0, 2.0}};
  for (const auto& tags : std::vector<std::vector<std::string>>{{"a"}, {"b"}, {"c"}, {}}) {
    const std::string svg = RenderLossPlotSvg(series, tags, "huge");
    ExpectSvg(svg);
    EXPECT_FALSE(PolylinePointCounts(svg).empty());
    EXPECT_FALSE(absl::StrContains(svg, "no data"));
  }
}

TEST(LossPlotTest, LongSeriesKeepsItsSpikes) {
  ScalarSeries series;
  for (int64_t step = 0; step < 100000; ++step) {
    series["loss"].emplace_back(step, step == 54321 ? 100.0 : 3.0 + std::sin(step * 0.01));
  }
  const std::string svg = RenderLossPlotSvg(series, {}, "long");
  ExpectSvg(svg);
  const std::vector<size_t> counts = PolylinePointCounts(svg);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_LE(counts[0], 2 * 541u);
  EXPECT_GE(counts[0], 540u);
  const std::vector<double> ys = FirstPolylineYs(svg);
  EXPECT_NEAR(*std::min_element(ys.begin(), ys.end()), 50 + 380.0 / 22, 0.01);
}

TEST(LossPlotTest, TextIsValidXmlText) {
  ScalarSeries series;
  const std::string bad_utf8 = "loss\xff\x01/\xe2\x82";
  const std::string long_tag = "a_very_long_tag_name_that_goes_on_and_on";
  series[bad_utf8] = {{1, 1.0}, {2, 0.5}};
  series[long_tag] = {{1, 1.0}};
  series["\xc3\xa9t\xc3\xa9"] = {{1, 2.0}};
  const std::string svg = RenderLossPlotSvg(series, {}, "t\xc0\xafitle");
  ExpectSvg(svg);
  EXPECT_THAT(svg, HasSubstr(">loss\xEF\xBF\xBD /\xEF\xBF\xBD\xEF\xBF\xBD</text>"));
  EXPECT_THAT(svg, HasSubstr(">a_very_long_tag_name_tha\xE2\x80\xA6</text>"));
  EXPECT_THAT(svg, HasSubstr(">\xc3\xa9t\xc3\xa9</text>"));
  EXPECT_THAT(svg, HasSubstr(">t\xEF\xBF\xBD\xEF\xBF\xBDitle</text>"));
}

TEST(LossPlotTest, WriteLossPlotReplacesTheFileWhole) {
  const std::string dir = FreshDir("plot");
  fs::create_directories(dir);
  const std::string path = dir + "/loss.svg";
  WriteAll(path, "old");
  ScalarSeries series = {{"loss", {{1, 3.0}, {2, 2.5}}}};
  ASSERT_TRUE(WriteLossPlot(path, series, {"loss"}, "run").ok());
  EXPECT_EQ(ReadAll(path), RenderLossPlotSvg(series, {"loss"}, "run"));
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    EXPECT_EQ(entry.path().filename().string(), "loss.svg");
    ++files;
  }
  EXPECT_EQ(files, 1u);
  EXPECT_FALSE(WriteLossPlot(dir + "/missing/loss.svg", series, {}, "run").ok());
}

TEST(LossPlotTest, PlotsWhatTheWriterRecorded) {
  const std::string dir = FreshDir("writer_plot");
  WriteTenSteps(dir);
  auto writer = MetricsWriter::Open(dir);
  ASSERT_TRUE(writer.ok());
  const std::string svg = RenderLossPlotSvg((*writer)->series(), kTags, "run");
  ExpectSvg(svg);
  EXPECT_EQ(PolylinePointCounts(svg), (std::vector<size_t>{10, 10, 10}));
}

}  // namespace
}  // namespace maximus::trainer
