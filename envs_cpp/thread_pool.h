// A small persistent pool: ParallelFor splits [0, n) into one contiguous chunk per thread,
// the calling thread taking the first. Work items must be independent; which thread runs
// which item never affects results.
//
// Batched env steps are short (tens of microseconds for small batches), so by default threads
// spin briefly on an atomic before sleeping on a condition variable: a wake-up through the
// kernel alone would cost as much as the work. Callers whose tasks take milliseconds and who
// share the cores with another pool (the fused kernels, beside torch's) pass spins = 0.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace cpfast {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class ThreadPool {
 public:
  static constexpr int kDefaultSpins = 1 << 14;  // roughly 50-200 microseconds

  explicit ThreadPool(int num_threads, int spins = kDefaultSpins)
      : num_threads_(num_threads < 1 ? 1 : num_threads), spins_(spins) {
    // A thread that cannot start (thread or memory limits) must not leave the ones already
    // started waiting forever, nor destroy joinable std::threads (std::terminate): stop and join
    // them, then report which thread failed.
    try {
      workers_.reserve(num_threads_ - 1);
      for (int t = 1; t < num_threads_; ++t) workers_.emplace_back([this, t] { WorkerLoop(t); });
    } catch (const std::exception& error) {
      const size_t started = workers_.size();
      Stop();
      throw std::runtime_error("could not start worker thread " + std::to_string(started + 1) + " of " +
                               std::to_string(num_threads_ - 1) + " (" + error.what() +
                               "); use fewer threads (num_threads)");
    }
  }

  ~ThreadPool() { Stop(); }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls body(begin, end) on disjoint chunks covering [0, n); returns when all are done.
  template <class Body>
  void ParallelFor(int n, Body& body) {
    const int used = n < num_threads_ ? n : num_threads_;
    if (used <= 1) {
      if (n > 0) body(0, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = [](void* ctx, int b, int e) { (*static_cast<Body*>(ctx))(b, e); };
      context_ = &body;
      n_ = n;
      used_ = used;
      pending_.store(used - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    RunChunk(0);
    for (int spin = 0; spin < spins_ && pending_.load(std::memory_order_acquire) != 0; ++spin) CpuRelax();
    if (pending_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    for (auto& w : workers_) w.join();
  }

  void RunChunk(int t) {
    const int64_t begin = static_cast<int64_t>(n_) * t / used_;
    const int64_t end = static_cast<int64_t>(n_) * (t + 1) / used_;
    task_(context_, static_cast<int>(begin), static_cast<int>(end));
  }

  void WorkerLoop(int t) {
    uint64_t seen = 0;
    for (;;) {
      for (int spin = 0; spin < spins_ && generation_.load(std::memory_order_acquire) == seen; ++spin) CpuRelax();
      bool participate;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        seen = generation_.load(std::memory_order_relaxed);
        if (stopping_) return;
        participate = t < used_;
      }
      if (!participate) continue;
      RunChunk(t);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_one();
      }
    }
  }

  const int num_threads_;
  const int spins_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stopping_ = false;
  void (*task_)(void*, int, int) = nullptr;
  void* context_ = nullptr;
  int n_ = 0, used_ = 0;
};

}  // namespace cpfast
