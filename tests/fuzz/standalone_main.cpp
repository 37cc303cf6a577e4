// A main() for fuzz targets when libFuzzer is not there (the g++ release build): replays every file of the
// corpus directories given on the command line, then runs a fixed number of deterministic mutations of them.
//
//   frame_fuzz_replay [--iterations N] [--seed S] CORPUS_DIR_OR_FILE...
//
// The mutations are seeded, so a failure reproduces exactly with the same arguments. The target aborts on a
// bug; reaching the summary line means every input passed.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using Input = std::vector<std::uint8_t>;

constexpr std::size_t kMaxInputSize = 8192;  // mutated inputs never grow past this

/// splitmix64: small, fast, and the same sequence on every platform.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15U);
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9U;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBU;
    return z ^ (z >> 31U);
  }
  /// Uniform-enough in [0, bound); bound > 0.
  std::size_t below(std::size_t bound) { return static_cast<std::size_t>(next() % bound); }
  std::uint8_t byte() { return static_cast<std::uint8_t>(next()); }

 private:
  std::uint64_t state_;
};

Input read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Input(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void run(const Input& input) { LLVMFuzzerTestOneInput(input.data(), input.size()); }

/// Values that sit on the decoder's boundaries, written over a little-endian field.
void overwrite_with_interesting(Input& input, Random& random) {
  static constexpr std::uint32_t kInteresting[] = {0,    1,    7,    8,          9,          16,         24,
                                                   40,   48,   63,   64,         65,         255,        256,
                                                   1023, 1024, 1025, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x52484F43};
  const std::uint32_t value = kInteresting[random.below(std::size(kInteresting))];
  const std::size_t width = std::size_t{1} << random.below(3);  // 1, 2 or 4 bytes
  if (input.size() < width) return;
  const std::size_t at = random.below(input.size() - width + 1);
  for (std::size_t i = 0; i < width; ++i) input[at + i] = static_cast<std::uint8_t>(value >> (8 * i));
}

void mutate_once(Input& input, const std::vector<Input>& corpus, Random& random) {
  switch (random.below(8)) {
    case 0:  // flip one bit
      if (!input.empty()) input[random.below(input.size())] ^= static_cast<std::uint8_t>(1U << random.below(8));
      break;
    case 1:  // replace a byte
      if (!input.empty()) input[random.below(input.size())] = random.byte();
      break;
    case 2:  // insert a byte
      if (input.size() < kMaxInputSize)
        input.insert(input.begin() + static_cast<std::ptrdiff_t>(random.below(input.size() + 1)), random.byte());
      break;
    case 3:  // erase a byte
      if (!input.empty()) input.erase(input.begin() + static_cast<std::ptrdiff_t>(random.below(input.size())));
      break;
    case 4:  // truncate
      input.resize(random.below(input.size() + 1));
      break;
    case 5:  // boundary value over a field
      overwrite_with_interesting(input, random);
      break;
    case 6: {  // append another corpus entry: frames back to back
      const Input& other = corpus[random.below(corpus.size())];
      if (input.size() + other.size() <= kMaxInputSize) input.insert(input.end(), other.begin(), other.end());
      break;
    }
    default: {  // duplicate a slice
      if (input.empty()) break;
      const std::size_t from = random.below(input.size());
      const std::size_t count = std::min(random.below(input.size() - from) + 1, kMaxInputSize - input.size());
      const Input slice(input.begin() + static_cast<std::ptrdiff_t>(from),
                        input.begin() + static_cast<std::ptrdiff_t>(from + count));
      input.insert(input.begin() + static_cast<std::ptrdiff_t>(random.below(input.size() + 1)), slice.begin(),
                   slice.end());
      break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t iterations = 200000;
  std::uint64_t seed = 1;
  std::vector<std::filesystem::path> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--iterations" && i + 1 < argc) {
      iterations = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (!arg.empty() && arg[0] == '-') {
      // libFuzzer-style flags (-max_total_time=...) mean nothing here.
      std::fprintf(stderr, "ignoring option %s\n", argv[i]);
    } else {
      paths.emplace_back(arg);
    }
  }

  std::vector<std::filesystem::path> files;
  for (const auto& path : paths) {
    if (std::filesystem::is_directory(path)) {
      for (const auto& entry : std::filesystem::directory_iterator(path))
        if (entry.is_regular_file()) files.push_back(entry.path());
    } else if (std::filesystem::is_regular_file(path)) {
      files.push_back(path);
    } else {
      std::fprintf(stderr, "no such corpus file or directory: %s\n", path.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());  // directory order varies; the mutation sequence must not
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s [--iterations N] [--seed S] CORPUS_DIR_OR_FILE...\n(no corpus files found)\n",
                 argv[0]);
    return 2;
  }

  std::vector<Input> corpus;
  corpus.reserve(files.size());
  for (const auto& file : files) {
    corpus.push_back(read_file(file));
    if (corpus.back().size() > kMaxInputSize) corpus.back().resize(kMaxInputSize);
    run(corpus.back());
  }
  run({});

  Random random(seed);
  std::uint64_t bytes = 0;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    Input input = corpus[random.below(corpus.size())];
    const std::size_t mutations = 1 + random.below(4);
    for (std::size_t m = 0; m < mutations; ++m) mutate_once(input, corpus, random);
    bytes += input.size();
    run(input);
  }
  std::printf("%s: %zu corpus files and %llu mutated inputs (%llu bytes, seed %llu) passed\n", argv[0], corpus.size(),
              static_cast<unsigned long long>(iterations), static_cast<unsigned long long>(bytes),
              static_cast<unsigned long long>(seed));
  return 0;
}
