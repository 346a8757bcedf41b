// The training run's metric outputs: a TensorBoard event file and a CSV.
//
//   <dir>/events.out.tfevents.<unix seconds>.<hostname>[.<n>]
//     TFRecord-framed tensorflow.Event records: first {wall_time,
//     file_version: "brain.Event:2"}, then one {wall_time, step,
//     summary {value {tag, simple_value}}} per scalar. `tensorboard --logdir
//     <dir>` reads it; every Open starts a new file (".<n>" only when the name
//     is taken), and TensorBoard merges the files of a directory.
//   <dir>/metrics.csv
//     "step,wall_seconds,tag,value", one row per scalar (long format, so a tag
//     may appear late); wall_seconds is Unix time, value the double in the
//     shortest form that reads back exactly. Tags holding ',' or '"' are
//     quoted as in RFC 4180.
//
// Both files are flushed when a scalar of a new step arrives and on Flush(),
// and fsync'ed on Close(). Not thread-safe.

#ifndef MAXIMUS_TRAINER_IO_METRICS_WRITER_H_
#define MAXIMUS_TRAINER_IO_METRICS_WRITER_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/io/tensorboard_event.pb.h"

namespace maximus::trainer {

// tag -> (step, value) points in the order they were written.
using ScalarSeries = std::map<std::string, std::vector<std::pair<int64_t, double>>>;

class MetricsWriter {
 public:
  // Creates `dir` if needed and starts a new event file there. An existing
  // metrics.csv is continued: with resume_step >= 0, its rows of steps after
  // resume_step (written by the run past the checkpoint being resumed) are
  // dropped first, so no step appears twice; the event file then starts with
  // a SessionLog START at resume_step + 1 that makes TensorBoard drop them
  // too. A torn last line (a crash mid-write) is dropped.
  static absl::StatusOr<std::unique_ptr<MetricsWriter>> Open(const std::string& dir,
                                                             int64_t resume_step = -1);

  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  ~MetricsWriter();  // Close(), errors ignored.

  // Records `value` of `tag` at `step`. Tags must be non-empty and hold no
  // line break. Call Flush() after a step's scalars for a live TensorBoard.
  absl::Status AddScalar(int64_t step, const std::string& tag, double value);

  // Hands everything written so far to the OS (no fsync).
  absl::Status Flush();

  // Flushes, fsyncs and closes both files; later calls do nothing.
  absl::Status Close();

  // Every scalar of this run, after those kept from an appended CSV.
  const ScalarSeries& series() const { return series_; }

  const std::string& event_file_path() const { return event_path_; }
  const std::string& csv_path() const { return csv_path_; }

 private:
  MetricsWriter() = default;

  absl::Status WriteRecord(const tensorflow::Event& event);
  double NextWallTime();

  std::string dir_;
  std::string event_path_;
  std::string csv_path_;
  std::FILE* events_ = nullptr;
  std::FILE* csv_ = nullptr;
  ScalarSeries series_;
  int64_t current_step_ = 0;
  bool has_step_ = false;
  double last_wall_time_ = 0;
};

// Reads a TFRecord event file back, checking both CRCs of every record:
// DATA_LOSS, naming the byte offset, on a mismatch, a truncated record or an
// unparsable event.
absl::StatusOr<std::vector<tensorflow::Event>> ReadEventFile(const std::string& path);

// The TFRecord framing of one record: u64 length (little-endian),
// u32 masked CRC-32C of those 8 bytes, the data, u32 masked CRC-32C of it.
std::string FrameTfRecord(const std::string& data);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_IO_METRICS_WRITER_H_
