// Tenant routing lookups/s: the edgeshard ring against what a user might pick instead (Jump
// Consistent Hash, a directory hash map, the same ring without its acceleration table).
#include "common/ring.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kTenants = 1'000'000;

// The 4-shard ring every benchmark routes with, built once.
const edgeshard::HashRing& ring() {
  static constexpr std::array<edgeshard::RingMember, 4> kMembers{
      {{"shard-a", 1}, {"shard-b", 1}, {"shard-c", 1}, {"shard-d", 1}}};
  static const edgeshard::HashRing r(kMembers);
  return r;
}

// Tenant keys "0".."999999" in a fixed shuffled order, so no peer gains from insertion order.
const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    v.reserve(kTenants);
    for (size_t i = 0; i < kTenants; ++i) {
      v.push_back(edgeshard::tenant_key_from_int(static_cast<int64_t>(i)));
    }
    std::shuffle(v.begin(), v.end(), std::mt19937_64(42));
    return v;
  }();
  return k;
}

// A directory: every tenant placed explicitly in a hash map, as a lookup table service would keep.
const std::unordered_map<std::string, int>& directory() {
  static const std::unordered_map<std::string, int> d = [] {
    std::unordered_map<std::string, int> m;
    m.reserve(keys().size());
    for (const std::string& key : keys()) {
      m.emplace(key, ring().owner_of_key(key));
    }
    return m;
  }();
  return d;
}

// Jump Consistent Hash (Lamping & Veach 2014, figure 1): bucket in [0, num_buckets) for a 64-bit
// key.
int32_t jump_consistent_hash(uint64_t key, int32_t num_buckets) {
  int64_t b = -1;
  int64_t j = 0;
  while (j < num_buckets) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = static_cast<int64_t>(static_cast<double>(b + 1) * (static_cast<double>(int64_t{1} << 31) /
                                                           static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<int32_t>(b);
}

// The ring's own lookup, with its acceleration table.
void BM_ring(benchmark::State& state) {
  const auto& r = ring();
  const auto& k = keys();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(r.owner_of_key(k[i]));
    i = (i + 1 == k.size()) ? 0 : i + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ring);

// Jump Consistent Hash over the same key hash: no per-shard names or weights, shards 0..n-1 only.
void BM_jump(benchmark::State& state) {
  const auto& k = keys();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(jump_consistent_hash(edgeshard::hash_tenant_key(k[i]), 4));
    i = (i + 1 == k.size()) ? 0 : i + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_jump);

// The directory's lookup: std::hash of the key, then a probe into 1M nodes spread over the heap.
void BM_directory(benchmark::State& state) {
  const auto& d = directory();
  const auto& k = keys();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(d.find(k[i])->second);
    i = (i + 1 == k.size()) ? 0 : i + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_directory);

// The same ring searched with a plain binary search over all points, to price the table.
void BM_binary_search(benchmark::State& state) {
  const auto hashes = ring().point_hashes();
  const auto owners = ring().point_owners();
  const auto& k = keys();
  size_t i = 0;
  for (auto _ : state) {
    const uint64_t h = edgeshard::hash_tenant_key(k[i]);
    auto it = std::lower_bound(hashes.begin(), hashes.end(), h);
    benchmark::DoNotOptimize(owners[it == hashes.end() ? 0 : it - hashes.begin()]);
    i = (i + 1 == k.size()) ? 0 : i + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_binary_search);

// Console reporter that also keeps each benchmark's items/s, to print ring/peer ratios at the end.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Plain tabular output without colour codes, so logs and RESULTS.md stay readable.
  RatioReporter() : ConsoleReporter(OO_Tabular) {}

  // Shows the runs as usual and records items/s of every plain (non-aggregate) repetition.
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Iteration && !run.error_occurred) {
        rates_[run.run_name.function_name].push_back(run.counters.at("items_per_second").value);
      }
    }
  }

  // Median items/s of a benchmark over its repetitions (--benchmark_repetitions), 0 if not run.
  double median_rate(const std::string& name) const {
    auto found = rates_.find(name);
    if (found == rates_.end()) {
      return 0.0;
    }
    std::vector<double> r = found->second;
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
  }

 private:
  std::map<std::string, std::vector<double>> rates_;
};

}  // namespace

// Runs the benchmarks, then prints how many times more lookups/s the ring does than each peer.
int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  directory();  // build the key set and the directory before the first benchmark starts
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const double ring_rate = reporter.median_rate("BM_ring");
  for (const char* peer : {"jump", "directory", "binary_search"}) {
    const double peer_rate = reporter.median_rate(std::string("BM_") + peer);
    if (ring_rate > 0 && peer_rate > 0) {
      std::printf("ratio ring/%s=%.2f ", peer, ring_rate / peer_rate);
    }
  }
  std::printf("\n");
  return 0;
}
