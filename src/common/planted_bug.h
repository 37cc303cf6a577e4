#pragma once
// Planted bugs, for the simulator's self-test: a checker that cannot fail is a defect, so a few known bugs are
// written into the code, each behind `planted_bug() == n`, and tests/sim checks that the simulator catches every
// one. Only the test-only target `planted_bugs` (tests/sim/CMakeLists.txt) defines COHORT_PLANTED_BUGS, compiling
// the files that hold bugs once more; its `--bug N` chooses one at run time. Everywhere else planted_bug() is the
// constant 0 and every planted branch folds away: no library or tool can switch a bug on.
//
// The bugs are listed where they are planted (consensus/raft.cpp, storage/log_writer.cpp, host/service_host.cpp,
// gateway/gateway.cpp). To add one: take the
// next number, guard the bug with `planted_bug() == n`, list it there, and add its ctest line in
// tests/sim/CMakeLists.txt (and its file to COHORT_PLANTED_SOURCES, if no bug lived there before).

namespace cohort {

// The two definitions sit in different inline namespaces so that their symbols differ: a file holding a bug that
// is missing from COHORT_PLANTED_SOURCES keeps its bug off (its test then fails) instead of breaking the ODR.
#ifdef COHORT_PLANTED_BUGS
inline namespace planted_bugs_on {
inline int g_planted_bug = 0;  // 0: none; set by the test's main before any simulation
inline int planted_bug() noexcept { return g_planted_bug; }
inline void plant_bug(int bug) noexcept { g_planted_bug = bug; }
}  // namespace planted_bugs_on
#else
inline namespace planted_bugs_off {
constexpr int planted_bug() noexcept { return 0; }
}  // namespace planted_bugs_off
#endif

}  // namespace cohort
