#include "trainer/io/metrics_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/crc32c.h"

namespace maximus::trainer {
namespace {

constexpr char kCsvName[] = "metrics.csv";
constexpr char kCsvHeader[] = "step,wall_seconds,tag,value";
constexpr char kEventFilePrefix[] = "events.out.tfevents.";
constexpr char kFileVersion[] = "brain.Event:2";
constexpr size_t kRecordHeaderBytes = 8 + 4;
constexpr size_t kRecordFooterBytes = 4;

absl::Status ErrnoStatus(absl::string_view what, absl::string_view path) {
  const int err = errno;
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

uint32_t MaskedCrc(absl::string_view data) {
  const uint32_t crc = base::Crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

void PutLittleEndian(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint64_t GetLittleEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return v;
}

// double -> float without the undefined behaviour of converting an
// out-of-range value: those become +-infinity, as TensorBoard would show them.
float ToFloat(double v) {
  if (std::isfinite(v) && std::fabs(v) > FLT_MAX) {
    return v > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  }
  return static_cast<float>(v);
}

// The shortest %g form that reads back as the same double.
std::string FormatDouble(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s;
  for (int precision = 1; precision <= 17; ++precision) {
    s = absl::StrFormat("%.*g", precision, v);
    double back;
    if (absl::SimpleAtod(s, &back) && back == v) break;
  }
  return s;
}

std::string CsvField(const std::string& tag) {
  if (tag.find_first_of(",\"") == std::string::npos) return tag;
  return absl::StrCat("\"", absl::StrReplaceAll(tag, {{"\"", "\"\""}}), "\"");
}

struct CsvRow {
  int64_t step;
  std::string tag;
  double value;
};

bool ParseCsvRow(absl::string_view line, CsvRow* row) {
  const size_t c1 = line.find(',');
  if (c1 == absl::string_view::npos) return false;
  const size_t c2 = line.find(',', c1 + 1);
  const size_t c3 = line.rfind(',');
  if (c2 == absl::string_view::npos || c3 <= c2) return false;
  double wall;
  if (!absl::SimpleAtoi(line.substr(0, c1), &row->step) ||
      !absl::SimpleAtod(line.substr(c1 + 1, c2 - c1 - 1), &wall) ||
      !absl::SimpleAtod(line.substr(c3 + 1), &row->value)) {
    return false;
  }
  absl::string_view tag = line.substr(c2 + 1, c3 - c2 - 1);
  if (!tag.empty() && tag.front() == '"') {
    if (tag.size() < 2 || tag.back() != '"') return false;
    row->tag = absl::StrReplaceAll(tag.substr(1, tag.size() - 2), {{"\"\"", "\""}});
  } else {
    if (tag.find('"') != absl::string_view::npos) return false;
    row->tag = std::string(tag);
  }
  return !row->tag.empty();
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync", path);
  return absl::OkStatus();
}

// Replaces `path` with `contents` all at once (temporary file, fsync, rename).
absl::Status WriteFileAtomically(const std::string& dir, const std::string& path,
                                 const std::string& contents) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return ErrnoStatus("create", tmp);
  const bool written = std::fwrite(contents.data(), 1, contents.size(), f) == contents.size() &&
                       std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  absl::Status status = written ? absl::OkStatus() : ErrnoStatus("write", tmp);
  if (std::fclose(f) != 0 && status.ok()) status = ErrnoStatus("close", tmp);
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus("rename", tmp);
  }
  if (!status.ok()) {
    std::remove(tmp.c_str());
    return status;
  }
  return FsyncPath(dir, O_RDONLY | O_DIRECTORY);
}

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string host(buf);
  for (char& c : host) {
    if (c == '/') c = '_';
  }
  return host;
}

}  // namespace

std::string FrameTfRecord(const std::string& data) {
  std::string record;
  record.reserve(kRecordHeaderBytes + data.size() + kRecordFooterBytes);
  PutLittleEndian(data.size(), 8, &record);
  PutLittleEndian(MaskedCrc(record), 4, &record);
  record += data;
  PutLittleEndian(MaskedCrc(data), 4, &record);
  return record;
}

absl::StatusOr<std::unique_ptr<MetricsWriter>> MetricsWriter::Open(const std::string& dir,
                                                                   int64_t resume_step) {
  if (dir.empty()) return absl::InvalidArgumentError("metrics dir is empty");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot create metrics dir ", dir, ": ", ec.message()));
  }
  std::unique_ptr<MetricsWriter> w(new MetricsWriter());
  w->dir_ = dir;
  w->csv_path_ = absl::StrCat(dir, "/", kCsvName);

  // Keep the rows of an earlier run (up to resume_step), rewriting the file
  // only when something is dropped.
  const std::string header_line = absl::StrCat(kCsvHeader, "\n");
  std::string kept = header_line;
  bool rewrite = true;
  {
    std::ifstream in(w->csv_path_, std::ios::binary);
    if (in) {
      std::stringstream buffer;
      buffer << in.rdbuf();
      const std::string contents = buffer.str();
      std::vector<absl::string_view> lines = absl::StrSplit(contents, '\n');
      const absl::string_view torn = lines.back();  // Empty when the file ends with '\n'.
      lines.pop_back();
      rewrite = !torn.empty();
      if (lines.empty()) {
        if (!absl::StartsWith(header_line, torn)) {
          return absl::FailedPreconditionError(
              absl::StrCat(w->csv_path_, " is not a metrics CSV (no header)"));
        }
        rewrite = true;
      } else if (lines[0] != kCsvHeader) {
        return absl::FailedPreconditionError(
            absl::StrCat(w->csv_path_, " is not a metrics CSV: header is '", lines[0], "'"));
      }
      for (size_t i = 1; i < lines.size(); ++i) {
        CsvRow row;
        if (!ParseCsvRow(lines[i], &row)) {
          return absl::DataLossError(
              absl::StrCat(w->csv_path_, " line ", i + 1, " is malformed: '", lines[i], "'"));
        }
        if (resume_step >= 0 && row.step > resume_step) {
          rewrite = true;
          continue;
        }
        absl::StrAppend(&kept, lines[i], "\n");
        w->series_[row.tag].emplace_back(row.step, row.value);
      }
    }
  }
  if (rewrite) {
    if (absl::Status s = WriteFileAtomically(dir, w->csv_path_, kept); !s.ok()) return s;
  }
  w->csv_ = std::fopen(w->csv_path_.c_str(), "ab");
  if (w->csv_ == nullptr) return ErrnoStatus("open", w->csv_path_);

  // A new event file per run; a suffix only when two runs start in the same
  // second on the same host.
  const std::string base =
      absl::StrCat(dir, "/", kEventFilePrefix, absl::ToUnixSeconds(absl::Now()), ".", HostName());
  int fd = -1;
  for (int n = 0; fd < 0; ++n) {
    w->event_path_ = n == 0 ? base : absl::StrCat(base, ".", n);
    fd = ::open(w->event_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && (errno != EEXIST || n == 1000)) return ErrnoStatus("create", w->event_path_);
  }
  w->events_ = ::fdopen(fd, "wb");
  if (w->events_ == nullptr) {
    absl::Status s = ErrnoStatus("fdopen", w->event_path_);
    ::close(fd);
    return s;
  }

  tensorflow::Event first;
  first.set_wall_time(w->NextWallTime());
  first.set_file_version(kFileVersion);
  if (absl::Status s = w->WriteRecord(first); !s.ok()) return s;
  if (resume_step >= 0 && resume_step < std::numeric_limits<int64_t>::max()) {
    tensorflow::Event start;
    start.set_wall_time(w->NextWallTime());
    start.set_step(resume_step + 1);
    start.mutable_session_log()->set_status(tensorflow::SessionLog::START);
    if (absl::Status s = w->WriteRecord(start); !s.ok()) return s;
  }
  if (absl::Status s = w->Flush(); !s.ok()) return s;
  return w;
}

MetricsWriter::~MetricsWriter() { Close().IgnoreError(); }

double MetricsWriter::NextWallTime() {
  // Monotone even if the system clock steps back.
  const double now = static_cast<double>(absl::ToUnixMicros(absl::Now())) / 1e6;
  if (now > last_wall_time_) last_wall_time_ = now;
  return last_wall_time_;
}

absl::Status MetricsWriter::WriteRecord(const tensorflow::Event& event) {
  std::string data;
  if (!event.SerializeToString(&data)) return absl::InternalError("cannot serialize an event");
  const std::string record = FrameTfRecord(data);
  if (std::fwrite(record.data(), 1, record.size(), events_) != record.size()) {
    return ErrnoStatus("write", event_path_);
  }
  return absl::OkStatus();
}

absl::Status MetricsWriter::AddScalar(int64_t step, const std::string& tag, double value) {
  if (events_ == nullptr || csv_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("metrics writer for ", dir_, " is closed"));
  }
  if (tag.empty() || tag.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("tag must be non-empty and on one line, got '", tag, "'"));
  }
  if (has_step_ && step != current_step_) {
    if (absl::Status s = Flush(); !s.ok()) return s;
  }
  current_step_ = step;
  has_step_ = true;

  const double wall_time = NextWallTime();
  tensorflow::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorflow::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(ToFloat(value));
  if (absl::Status s = WriteRecord(event); !s.ok()) return s;

  const std::string row =
      absl::StrFormat("%d,%.6f,%s,%s\n", step, wall_time, CsvField(tag), FormatDouble(value));
  if (std::fwrite(row.data(), 1, row.size(), csv_) != row.size()) {
    return ErrnoStatus("write", csv_path_);
  }
  series_[tag].emplace_back(step, value);
  return absl::OkStatus();
}

absl::Status MetricsWriter::Flush() {
  if (events_ != nullptr && std::fflush(events_) != 0) return ErrnoStatus("flush", event_path_);
  if (csv_ != nullptr && std::fflush(csv_) != 0) return ErrnoStatus("flush", csv_path_);
  return absl::OkStatus();
}

absl::Status MetricsWriter::Close() {
  if (events_ == nullptr && csv_ == nullptr) return absl::OkStatus();
  absl::Status status = Flush();
  auto close_file = [&status](std::FILE*& f, const std::string& path) {
    if (f == nullptr) return;
    if (::fsync(fileno(f)) != 0 && status.ok()) status = ErrnoStatus("fsync", path);
    if (std::fclose(f) != 0 && status.ok()) status = ErrnoStatus("close", path);
    f = nullptr;
  };
  close_file(events_, event_path_);
  close_file(csv_, csv_path_);
  // The new event file's directory entry.
  if (absl::Status s = FsyncPath(dir_, O_RDONLY | O_DIRECTORY); !s.ok() && status.ok()) status = s;
  return status;
}

absl::StatusOr<std::vector<tensorflow::Event>> ReadEventFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoStatus("open", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return ErrnoStatus("read", path);
  const std::string contents = buffer.str();

  std::vector<tensorflow::Event> events;
  size_t offset = 0;
  while (offset < contents.size()) {
    const size_t left = contents.size() - offset;
    if (left < kRecordHeaderBytes) {
      return absl::DataLossError(absl::StrCat(path, ": truncated record header at offset ", offset,
                                              " (", left, " bytes left)"));
    }
    const char* p = contents.data() + offset;
    const uint64_t length = GetLittleEndian(p, 8);
    if (GetLittleEndian(p + 8, 4) != MaskedCrc(absl::string_view(p, 8))) {
      return absl::DataLossError(
          absl::StrCat(path, ": length CRC mismatch in the record at offset ", offset));
    }
    const size_t body = left - kRecordHeaderBytes;  // Data and footer, if whole.
    if (body < kRecordFooterBytes || length > body - kRecordFooterBytes) {
      return absl::DataLossError(absl::StrCat(path, ": truncated record at offset ", offset, " (",
                                              length, " data bytes, ", left, " bytes left)"));
    }
    const absl::string_view data(p + kRecordHeaderBytes, length);
    if (GetLittleEndian(p + kRecordHeaderBytes + length, 4) != MaskedCrc(data)) {
      return absl::DataLossError(
          absl::StrCat(path, ": data CRC mismatch in the record at offset ", offset));
    }
    tensorflow::Event event;
    if (length > static_cast<uint64_t>(std::numeric_limits<int>::max()) ||
        !event.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
      return absl::DataLossError(
          absl::StrCat(path, ": the record at offset ", offset, " is not an Event"));
    }
    events.push_back(std::move(event));
    offset += kRecordHeaderBytes + length + kRecordFooterBytes;
  }
  return events;
}

}  // namespace maximus::trainer
