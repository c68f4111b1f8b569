#include "backends/cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln::cpu {

namespace {
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Workers wait for a job; the caller runs chunk 0 itself and waits for the rest.
class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      stop_flag_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return int(workers_.size()) + 1; }

  void run(int chunks, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> one_job(run_mu_);  // nested/concurrent callers serialize
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      next_ = 1;
      chunks_ = chunks;
      done_ = 1;
      ++epoch_;
    }
    cv_.notify_all();
    job(0);
    drain();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return done_ == chunks_; });
    job_ = nullptr;
  }

 private:
  void drain() {
    for (;;) {
      int c;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (!job_ || next_ >= chunks_) return;
        c = next_++;
      }
      (*job_)(c);
      std::lock_guard<std::mutex> lk(mu_);
      if (++done_ == chunks_) done_cv_.notify_all();
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      // Inference issues jobs back to back: spin briefly before sleeping, so a
      // layer's chunks start without a futex wake-up (tens of microseconds).
      for (int i = 0; i < kSpin && epoch_.load(std::memory_order_acquire) == seen && !stop_flag_.load(); ++i)
        spin_pause();
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || epoch_ != seen; });
        if (stop_) return;
        seen = epoch_;
      }
      drain();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int next_ = 0, chunks_ = 0, done_ = 0;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<bool> stop_flag_{false};
  bool stop_ = false;
  static constexpr int kSpin = 4000;  // roughly 10-30 us
};

std::atomic<int> g_threads{0};

int default_threads() {
  if (const char* e = std::getenv("KILN_NUM_THREADS")) {
    int n = std::atoi(e);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
  static Pool p(num_threads());
  return p;
}

thread_local bool t_in_parallel = false;
}  // namespace

int num_threads() {
  int n = g_threads.load();
  if (n > 0) return n;
  static const int dflt = default_threads();  // hardware_concurrency() reads sysfs each call
  return dflt;
}

void set_num_threads(int n) { g_threads.store(n); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int threads = std::min<int64_t>(num_threads(), (n + grain - 1) / grain);
  if (threads <= 1 || t_in_parallel) {
    fn(0, n);
    return;
  }
  Pool& p = pool();
  int chunks = std::min(threads, p.size());
  int64_t step = (n + chunks - 1) / chunks;
  p.run(chunks, [&](int c) {
    int64_t b = c * step, e = std::min(n, b + step);
    bool was = t_in_parallel;
    t_in_parallel = true;
    if (b < e) fn(b, e);
    t_in_parallel = was;
  });
}

}  // namespace kiln::cpu
