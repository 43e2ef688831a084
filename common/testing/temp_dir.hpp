// A fresh temporary directory for a test, removed with everything in it when the test ends.
// Header-only, for the unit tests of every component (never linked into edgeshard.so).
#pragma once

#include "common/no_postgres.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace edgeshard::testing_support {

// A directory under the test's temporary directory, named prefix_XXXXXX.
class TempDir {
 public:
  // Creates it.
  explicit TempDir(const std::string& prefix = "edgeshard") {
    std::string tmpl = (std::filesystem::path(testing::TempDir()) / (prefix + "_XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  // Removes it and its content.
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Its path.
  const std::filesystem::path& path() const noexcept { return path_; }
  // The path of name inside it, as a string.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace edgeshard::testing_support
