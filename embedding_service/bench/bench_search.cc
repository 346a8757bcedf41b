// bazel run //embedding_service:bench_search [-- --n=1000000 --dims=640 --queries=1000]
//
// Recall@k against exact full-dimension search, and queries per second on
// one thread and on all threads, in one run over the same vectors, for
//   (a) exact flat search (ours: every whole vector, AVX2),
//   (b) coarse to fine (ours: 64-d prefix scan, k * oversample reranked on
//       all dimensions) at several oversample factors,
//   (c) FAISS (Debian's libfaiss-dev) IndexFlatIP and IndexHNSWFlat.
//
// The vectors are synthetic with Matryoshka structure: a mixture of
// --clusters Gaussian clusters whose per-dimension variance decays as
// 1 / (1 + j / --decay), so that the leading dimensions carry most of a
// vector's direction, as MAXIS's 64-d auxiliary loss makes them do. Queries
// are fresh draws from the same mixture. All vectors are L2-normalised; the
// score is the inner product (cosine).
//
// Ground truth: FAISS IndexFlatIP (exact, batched through BLAS), checked
// against our exact search on the queries we time.
//
// One thread: each query alone, one after another (FAISS: one query per
// search call with one OpenMP thread). All threads: ours spreads queries over
// the thread pool, one query per worker at a time; FAISS gets all queries in
// one call on all OpenMP threads (its own best: BLAS for the flat index).
// QPS is the median of --repeats timed runs over --time_queries queries.

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/thread_pool.h"
#include "embedding_service/vector_index.h"
#include "faiss/IndexFlat.h"
#include "faiss/IndexHNSW.h"
#include "faiss/utils/utils.h"
#include "kernels/inner_product_scan.h"

ABSL_FLAG(int64_t, n, 1000000, "Vectors in the index");
ABSL_FLAG(int64_t, dims, 640, "Dimensions of each vector");
ABSL_FLAG(int64_t, queries, 1000, "Queries for recall");
ABSL_FLAG(int64_t, time_queries, 100, "Queries of each single-thread timing run");
ABSL_FLAG(int64_t, exact_time_queries, 20,
          "Queries of each single-thread timing run of exact search (each reads every vector)");
ABSL_FLAG(int, repeats, 3, "Timed runs per measurement (the median is reported)");
ABSL_FLAG(int64_t, k, 10, "Neighbours per query");
ABSL_FLAG(std::string, oversample, "1,2,4,8,16,32", "Oversample factors of coarse to fine");
ABSL_FLAG(std::string, prefilter_dims, "64", "Prefix sizes of stage 1 to measure");
ABSL_FLAG(int64_t, clusters, 1000, "Clusters of the synthetic mixture");
ABSL_FLAG(double, decay, 32.0, "Variance of dimension j is 1 / (1 + j / decay)");
ABSL_FLAG(double, spread, 0.7, "Within-cluster standard deviation relative to the centres'");
ABSL_FLAG(bool, faiss_hnsw, true, "Build and measure FAISS IndexHNSWFlat");
ABSL_FLAG(int, hnsw_m, 32, "HNSW neighbours per node (M)");
ABSL_FLAG(int, hnsw_ef_construction, 40, "HNSW efConstruction");
ABSL_FLAG(std::string, hnsw_ef_search, "16,32,64,128,256", "HNSW efSearch values to measure");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the synthetic data");

namespace {

namespace embedding = maximus::embedding;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::vector<int64_t> ParseList(const std::string& text) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      absl::FPrintF(stderr, "bench_search: \"%s\" is not a positive integer\n", part);
      std::exit(2);
    }
    values.push_back(v);
  }
  return values;
}

// Rows [begin, end) of the mixture: centre + spread * noise, both with the
// decaying per-dimension standard deviation, normalised. Row i depends on
// (seed, i) only, so the data do not depend on the thread count.
void FillMixture(const std::vector<float>& centres, int64_t clusters, int64_t dims,
                 const std::vector<float>& stddev, double spread, uint64_t seed, int64_t begin,
                 int64_t end, float* out) {
  for (int64_t i = begin; i < end; ++i) {
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
    std::normal_distribution<float> normal;
    const int64_t c = std::uniform_int_distribution<int64_t>(0, clusters - 1)(rng);
    float* row = out + (i - begin) * dims;
    double norm = 0;
    for (int64_t j = 0; j < dims; ++j) {
      row[j] = centres[c * dims + j] + static_cast<float>(spread) * stddev[j] * normal(rng);
      norm += static_cast<double>(row[j]) * row[j];
    }
    const float inverse = static_cast<float>(1.0 / std::sqrt(norm));
    for (int64_t j = 0; j < dims; ++j) row[j] *= inverse;
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The median over `repeats` of queries per second of `run(count)`.
template <typename Run>
double MedianQps(int repeats, int64_t count, Run run) {
  std::vector<double> qps;
  for (int r = 0; r < repeats; ++r) {
    const Clock::time_point start = Clock::now();
    run(count);
    qps.push_back(count / Seconds(start));
  }
  return Median(qps);
}

double Recall(const std::vector<std::vector<int64_t>>& found, const std::vector<int64_t>& truth,
              int64_t k) {
  int64_t hits = 0, total = 0;
  for (size_t q = 0; q < found.size(); ++q) {
    const int64_t* t = truth.data() + q * k;
    for (int64_t id : found[q]) hits += std::count(t, t + k, id);
    total += k;
  }
  return static_cast<double>(hits) / total;
}

// Read bandwidth of one thread and of all: a sum over `bytes` of `data`.
double ReadBandwidth(const float* data, int64_t floats, int threads) {
  std::vector<double> rates;
  for (int r = 0; r < 3; ++r) {
    const Clock::time_point start = Clock::now();
    std::vector<double> sums(threads, 0.0);
    maximus::base::ThreadPool& pool = maximus::base::ThreadPool::Shared();
    const int64_t chunk = (floats + threads - 1) / threads;
    pool.ParallelFor(threads, threads, [&](size_t t) {
      const float one = 1.0f;
      const int64_t begin = t * chunk, end = std::min(floats, begin + chunk);
      // A 16-wide dot product with ones: the scan kernel, at full speed.
      float partial[256];
      for (int64_t i = begin; i + 4096 <= end; i += 4096) {
        maximus::kernels::InnerProductScan(&one, 1, data + i, 256, 16, partial);
        sums[t] += partial[0] + partial[255];
      }
    });
    rates.push_back(floats * 4.0 / Seconds(start));
    if (sums[0] == 12345.678) std::printf(" ");
  }
  return Median(rates);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // A line at a time: a long run interrupted keeps what it measured.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const int64_t n = absl::GetFlag(FLAGS_n), d = absl::GetFlag(FLAGS_dims),
                nq = absl::GetFlag(FLAGS_queries), k = absl::GetFlag(FLAGS_k);
  const int64_t time_queries = std::min(nq, absl::GetFlag(FLAGS_time_queries));
  const int64_t exact_time_queries = std::min(nq, absl::GetFlag(FLAGS_exact_time_queries));
  const int repeats = absl::GetFlag(FLAGS_repeats);
  const int64_t clusters = absl::GetFlag(FLAGS_clusters);
  if (n < k || d < 1 || nq < 1 || k < 1 || clusters < 1 || repeats < 1) {
    absl::FPrintF(stderr, "bench_search: need n >= k >= 1, dims, queries, clusters, repeats >= 1\n");
    return 2;
  }
  maximus::base::ThreadPool& pool = maximus::base::ThreadPool::Shared();
  const int threads = pool.size();
  absl::PrintF("bench_search: %d vectors x %d dims (fp32), %d queries, k = %d, %d threads%s\n", n,
               d, nq, k, threads,
               maximus::kernels::CpuHasAvx2() ? ", AVX2" : ", no AVX2 (scalar scans)");
  absl::PrintF("FAISS %d.%d.%d, compiled with: %s\n", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
               FAISS_VERSION_PATCH,
               faiss::get_compile_options());
  absl::PrintF(
      "data: synthetic Matryoshka-structured mixture, %d clusters, variance 1/(1+j/%.0f), "
      "spread %.2f, seed %d\n",
      clusters, absl::GetFlag(FLAGS_decay), absl::GetFlag(FLAGS_spread), absl::GetFlag(FLAGS_seed));

  // --- Data -----------------------------------------------------------------
  Clock::time_point start = Clock::now();
  std::vector<float> stddev(d);
  for (int64_t j = 0; j < d; ++j) stddev[j] = 1.0f / std::sqrt(1.0f + j / absl::GetFlag(FLAGS_decay));
  std::vector<float> centres(clusters * d);
  {
    std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
    std::normal_distribution<float> normal;
    for (int64_t c = 0; c < clusters; ++c) {
      for (int64_t j = 0; j < d; ++j) centres[c * d + j] = stddev[j] * normal(rng);
    }
  }
  std::vector<float> base(n * d), queries(nq * d);
  const int64_t rows_per_task = 4096;
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  pool.ParallelFor((n + rows_per_task - 1) / rows_per_task, threads, [&](size_t t) {
    const int64_t begin = t * rows_per_task, end = std::min(n, begin + rows_per_task);
    FillMixture(centres, clusters, d, stddev, absl::GetFlag(FLAGS_spread), seed, begin, end,
                base.data() + begin * d);
  });
  FillMixture(centres, clusters, d, stddev, absl::GetFlag(FLAGS_spread), seed + 1, 0, nq,
              queries.data());
  absl::PrintF("generated in %.1f s\n", Seconds(start));

  // --- Ground truth: FAISS flat, all queries in one batched call ------------
  start = Clock::now();
  faiss::IndexFlatIP flat(d);
  flat.add(n, base.data());
  std::vector<float> truth_scores(nq * k);
  std::vector<faiss::Index::idx_t> truth_labels(nq * k);
  omp_set_num_threads(threads);
  const Clock::time_point truth_start = Clock::now();
  flat.search(nq, queries.data(), k, truth_scores.data(), truth_labels.data());
  const double faiss_flat_batch_seconds = Seconds(truth_start);
  std::vector<int64_t> truth(truth_labels.begin(), truth_labels.end());
  absl::PrintF("ground truth (FAISS IndexFlatIP, %d queries batched): %.1f s\n", nq,
               faiss_flat_batch_seconds);

  // --- Our index ---------------------------------------------------------------
  start = Clock::now();
  embedding::VectorIndex index(embedding::IndexConfig{d, embedding::ElementType::kFloat32});
  index.Reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    embedding::VectorRecord record;
    record.id = std::to_string(i);
    record.values.assign(base.begin() + i * d, base.begin() + (i + 1) * d);
    index.Upsert(std::move(record));
  }
  absl::PrintF("our index built in %.1f s (%.2f GB of matrices)\n", Seconds(start),
               index.MemoryBytes() / 1e9);

  const double bw_one = ReadBandwidth(base.data(), n * d, 1);
  const double bw_all = ReadBandwidth(base.data(), n * d, threads);
  absl::PrintF("read bandwidth (AVX2 scan of %.2f GB): %.1f GB/s one thread, %.1f GB/s %d threads\n",
               n * d * 4 / 1e9, bw_one / 1e9, bw_all / 1e9, threads);

  auto search_ours = [&](const embedding::SearchOptions& options, int64_t q) {
    std::vector<embedding::SearchHit> hits =
        index.Search(absl::MakeConstSpan(queries.data() + q * d, d), options);
    std::vector<int64_t> ids;
    for (const embedding::SearchHit& h : hits) ids.push_back(std::stoll(h.id));
    return ids;
  };
  auto all_queries = [&](const embedding::SearchOptions& options) {
    std::vector<std::vector<int64_t>> found(nq);
    const Clock::time_point t = Clock::now();
    pool.ParallelFor(nq, threads, [&](size_t q) { found[q] = search_ours(options, q); });
    return std::make_pair(found, nq / Seconds(t));
  };

  absl::PrintF("\n%-44s %9s %12s %12s %14s\n", "method", "recall@10", "QPS 1 thread",
               absl::StrFormat("QPS %d thr", threads), "bytes/query");
  // (a) exact flat.
  embedding::SearchOptions exact;
  exact.k = k;
  exact.mode = embedding::SearchMode::kExact;
  std::vector<std::vector<int64_t>> exact_found(exact_time_queries);
  for (int64_t q = 0; q < exact_time_queries; ++q) exact_found[q] = search_ours(exact, q);
  const double exact_recall = Recall(exact_found, truth, k);
  const double exact_one = MedianQps(repeats, exact_time_queries, [&](int64_t count) {
    for (int64_t q = 0; q < count; ++q) search_ours(exact, q);
  });
  const double exact_all = MedianQps(repeats, exact_time_queries * threads, [&](int64_t count) {
    pool.ParallelFor(count, threads, [&](size_t q) { search_ours(exact, q % nq); });
  });
  const double exact_bytes = static_cast<double>(n) * d * 4;
  absl::PrintF("%-44s %9.4f %12.2f %12.2f %14.3g   (recall on %d queries; floor %.2f / %.2f QPS)\n",
               "ours exact flat (AVX2)", exact_recall, exact_one, exact_all, exact_bytes,
               exact_time_queries, bw_one / exact_bytes, bw_all / exact_bytes);

  // (b) coarse to fine.
  for (int64_t prefilter : ParseList(absl::GetFlag(FLAGS_prefilter_dims))) {
    for (int64_t oversample : ParseList(absl::GetFlag(FLAGS_oversample))) {
      embedding::SearchOptions options;
      options.k = k;
      options.prefilter_dims = prefilter;
      options.oversample = oversample;
      auto [found, qps_all_recall_run] = all_queries(options);
      const double recall = Recall(found, truth, k);
      const double one = MedianQps(repeats, time_queries, [&](int64_t count) {
        for (int64_t q = 0; q < count; ++q) search_ours(options, q);
      });
      const double all = MedianQps(repeats, time_queries * threads, [&](int64_t count) {
        pool.ParallelFor(count, threads, [&](size_t q) { search_ours(options, q % nq); });
      });
      // Stage 1 reads each prefix (64 dims: the contiguous 256-byte rows;
      // wider: that many floats of each whole row); stage 2 reads k *
      // oversample whole rows.
      const double bytes = static_cast<double>(n) * prefilter * 4 +
                           static_cast<double>(k * oversample) * d * 4;
      absl::PrintF(
          "%-44s %9.4f %12.2f %12.2f %14.3g   (%.1fx exact 1 thr; floor %.1f / %.1f QPS)\n",
          absl::StrFormat("ours coarse-to-fine %dd, oversample %d", prefilter, oversample), recall,
          one, all, bytes, one / exact_one, bw_one / bytes, bw_all / bytes);
    }
  }

  // (c) FAISS.
  {
    std::vector<float> scores(k);
    std::vector<faiss::Index::idx_t> labels(k);
    omp_set_num_threads(1);
    const double one = MedianQps(repeats, exact_time_queries, [&](int64_t count) {
      for (int64_t q = 0; q < count; ++q) {
        flat.search(1, queries.data() + q * d, k, scores.data(), labels.data());
      }
    });
    omp_set_num_threads(threads);
    absl::PrintF("%-44s %9.4f %12.2f %12.2f %14.3g   (all threads: %d queries in one call)\n",
                 "FAISS IndexFlatIP", 1.0, one, nq / faiss_flat_batch_seconds, exact_bytes, nq);
  }
  // Our exact search against FAISS's on the timed queries.
  {
    int64_t agree = 0;
    for (int64_t q = 0; q < exact_time_queries; ++q) {
      std::vector<int64_t> t(truth.begin() + q * k, truth.begin() + (q + 1) * k);
      agree += exact_found[q] == t;
    }
    absl::PrintF("%-44s %d of %d queries give FAISS's exact ids in FAISS's order\n",
                 "check: ours exact vs FAISS flat:", agree, exact_time_queries);
  }
  if (absl::GetFlag(FLAGS_faiss_hnsw)) {
    start = Clock::now();
    faiss::IndexHNSWFlat hnsw(d, absl::GetFlag(FLAGS_hnsw_m), faiss::METRIC_INNER_PRODUCT);
    hnsw.hnsw.efConstruction = absl::GetFlag(FLAGS_hnsw_ef_construction);
    omp_set_num_threads(threads);
    hnsw.add(n, base.data());
    absl::PrintF("FAISS IndexHNSWFlat (M %d, efConstruction %d) built in %.1f s\n",
                 absl::GetFlag(FLAGS_hnsw_m), absl::GetFlag(FLAGS_hnsw_ef_construction),
                 Seconds(start));
    for (int64_t ef : ParseList(absl::GetFlag(FLAGS_hnsw_ef_search))) {
      hnsw.hnsw.efSearch = static_cast<int>(ef);
      std::vector<float> scores(nq * k);
      std::vector<faiss::Index::idx_t> labels(nq * k);
      omp_set_num_threads(threads);
      std::vector<double> all_qps;
      for (int r = 0; r < repeats; ++r) {
        const Clock::time_point t = Clock::now();
        hnsw.search(nq, queries.data(), k, scores.data(), labels.data());
        all_qps.push_back(nq / Seconds(t));
      }
      std::vector<std::vector<int64_t>> found(nq);
      for (int64_t q = 0; q < nq; ++q) found[q].assign(labels.begin() + q * k, labels.begin() + (q + 1) * k);
      omp_set_num_threads(1);
      const double one = MedianQps(repeats, time_queries, [&](int64_t count) {
        for (int64_t q = 0; q < count; ++q) {
          hnsw.search(1, queries.data() + q * d, k, scores.data(), labels.data());
        }
      });
      absl::PrintF("%-44s %9.4f %12.2f %12.2f %14s\n",
                   absl::StrFormat("FAISS IndexHNSWFlat efSearch %d", ef), Recall(found, truth, k),
                   one, Median(all_qps), "-");
    }
  }
  return 0;
}
