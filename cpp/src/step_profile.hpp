// The opt-in timers of Network::train_step (Network::set_profiling; bench/bench_train.py prints
// the split). Wall time with std::chrono::steady_clock, taken only on the thread that called
// train_step: that thread is thread 0 of the step's team, and every timed phase ends with the
// barrier of its worksharing loop, so a phase's time is the team's wall time for it, waiting on
// the slowest thread included.
//
// Phases: gemm = the GEMM blocks of a layer (with the bias rows copied into the output, the sums
// of squares of a weight gradient and the bias-gradient reduction that share those loops); own =
// every pass of gradwatch's own between GEMMs (batch-norm moments and coefficients, activation,
// dropout, residual, loss, activation backward, bias partial sums; those that run inside a
// GEMM's blocks, on the rows a block wrote, are timed there on the calling thread, and that time
// is taken off the GEMM phase's); tail = the step after the passes (finiteness checks, norm,
// optimiser update, running statistics). The rest of total (argument checks, workspace,
// OpenBLAS thread switch, starting the team) is the core's overhead.
//
// Off (the default), a phase costs one read of a thread-local pointer and a branch.
#pragma once

#include <chrono>
#include <cstdint>

#include "gradwatch/network.hpp"

namespace gradwatch {

// The profile the calling thread fills, null when profiling is off (or on other threads).
inline StepProfile*& current_step_profile() {
  static thread_local StepProfile* profile = nullptr;
  return profile;
}

inline int64_t steady_nanoseconds() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Adds the wall time of its scope to one field of the calling thread's profile, if any.
class PhaseTimer {
 public:
  explicit PhaseTimer(int64_t StepProfile::*field)
      : profile_(current_step_profile()), field_(field) {
    if (profile_ != nullptr) start_ = steady_nanoseconds();
  }
  ~PhaseTimer() {
    if (profile_ != nullptr) profile_->*field_ += steady_nanoseconds() - start_;
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  StepProfile* profile_;
  int64_t StepProfile::*field_;
  int64_t start_ = 0;
};

// Adds the wall time of its scope to `field`, less what `inner` (timed by PhaseTimers inside
// the scope) gained meanwhile: for a phase that contains another.
class FusedPhaseTimer {
 public:
  FusedPhaseTimer(int64_t StepProfile::*field, int64_t StepProfile::*inner)
      : profile_(current_step_profile()), field_(field), inner_(inner) {
    if (profile_ == nullptr) return;
    start_ = steady_nanoseconds();
    inner_start_ = profile_->*inner_;
  }
  ~FusedPhaseTimer() {
    if (profile_ == nullptr) return;
    profile_->*field_ += steady_nanoseconds() - start_ - (profile_->*inner_ - inner_start_);
  }
  FusedPhaseTimer(const FusedPhaseTimer&) = delete;
  FusedPhaseTimer& operator=(const FusedPhaseTimer&) = delete;

 private:
  StepProfile* profile_;
  int64_t StepProfile::*field_;
  int64_t StepProfile::*inner_;
  int64_t start_ = 0, inner_start_ = 0;
};

// Makes `profile` (null: none) the calling thread's for one train_step and adds the step and
// its total time to it.
class StepProfileScope {
 public:
  explicit StepProfileScope(StepProfile* profile)
      : previous_(current_step_profile()), profile_(profile) {
    current_step_profile() = profile;
    if (profile_ != nullptr) start_ = steady_nanoseconds();
  }
  ~StepProfileScope() {
    if (profile_ != nullptr) {
      profile_->total_ns += steady_nanoseconds() - start_;
      ++profile_->steps;
    }
    current_step_profile() = previous_;
  }
  StepProfileScope(const StepProfileScope&) = delete;
  StepProfileScope& operator=(const StepProfileScope&) = delete;

 private:
  StepProfile* previous_;
  StepProfile* profile_;
  int64_t start_ = 0;
};

}  // namespace gradwatch
