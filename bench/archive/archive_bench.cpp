// bench_archive: the archive module's work outside PostgreSQL, for bench/archive/run. Archives
// each FILE into the repository REPO with archive::push_file (the very function the module's
// archive callback calls: compress, write a temporary file, fsync, rename, fsync the directory),
// one after another in one process, as the archiver calls the module, and prints
//   result <files> <bytes_in> <bytes_out> <seconds>
// With --restore DIR it instead restores every FILE's name from REPO into DIR with fetch_file
// (what `edgeshard-wal restore` does per file) and prints the same line (bytes_out = bytes
// written to DIR).
//   bench_archive --repo REPO [--level N] [--restore DIR] FILE...
#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using edgeshard::archive::FetchOutcome;
using edgeshard::archive::Writer;

// Prints the usage and returns the usage exit status.
int usage() {
  std::fprintf(stderr, "usage: bench_archive --repo REPO [--level N] [--restore DIR] FILE...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string repo;
  std::string restore_dir;
  int level = 0;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--repo" && i + 1 < argc) {
      repo = argv[++i];
    } else if (a == "--level" && i + 1 < argc) {
      level = std::atoi(argv[++i]);
    } else if (a == "--restore" && i + 1 < argc) {
      restore_dir = argv[++i];
    } else if (!a.empty() && a[0] == '-') {
      return usage();
    } else {
      files.push_back(a);
    }
  }
  if (repo.empty() || files.empty()) return usage();

  Writer writer({.block_size = edgeshard::archive::kDefaultBlockSize, .level = level});
  uint64_t in = 0;
  uint64_t out = 0;
  const auto began = std::chrono::steady_clock::now();
  for (const std::string& path : files) {
    const std::string name = std::filesystem::path(path).filename().string();
    if (restore_dir.empty()) {
      const auto r = edgeshard::archive::push_file(repo, name, path, writer);
      if (!r.ok) {
        std::fprintf(stderr, "bench_archive: %s\n", r.error.message.c_str());
        return 1;
      }
      in += r.bytes_in;
      out += r.bytes_out;
    } else {
      const std::string dest = restore_dir + "/" + name;
      const auto r = edgeshard::archive::fetch_file(repo, name, dest);
      if (r.outcome != FetchOutcome::kRestored) {
        std::fprintf(stderr, "bench_archive: %s: %s\n", name.c_str(),
                     r.outcome == FetchOutcome::kMissing ? "not in the repository" : r.error.message.c_str());
        return 1;
      }
      in += std::filesystem::file_size(edgeshard::archive::repo_file_path(repo, name));
      out += r.bytes;
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::printf("result %zu %llu %llu %.6f\n", files.size(), static_cast<unsigned long long>(in),
              static_cast<unsigned long long>(out), secs);
  return 0;
}
