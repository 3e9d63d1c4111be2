// Function-entry coverage for packaging/bulwark.order (scripts/order-file): built with
// -sanitize-coverage=func,trace-pc-guard, every function calls __sanitizer_cov_trace_pc_guard with
// its own guard. The first call records where it came from (the return address, inside the code
// that ran) and the guard's address (which names the function even when LLVM merged its body
// with others' into one `…Tm` function and left it a thunk that passes its guard along), both as
// offsets from the executable's base, written at exit to $BULWARK_COV_DIR/cov.NS.PID (NS: the
// process's start on the monotonic clock, so that the files sort in time order). A process that
// does not exit normally (a signal, an AddressSanitizer report) writes nothing.
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
static uintptr_t pcs[1 << 20], guards[1 << 20];
static uint32_t count;
static uintptr_t base;
static unsigned long long started;
static int phdr(struct dl_phdr_info *info, size_t size, void *data) { (void)size; (void)data; base = info->dlpi_addr; return 1; }
static void dump(void) {
  const char *dir = getenv("BULWARK_COV_DIR");
  if (!dir) return;
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/cov.%020llu.%d", dir, started, (int)getpid());
  if (n < 0 || (size_t)n >= sizeof path) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  FILE *f = fdopen(fd, "w"); if (!f) { close(fd); return; }
  uint32_t total = __atomic_load_n(&count, __ATOMIC_RELAXED);
  for (uint32_t i = 0; i < total && i < (1u << 20); i++) if (pcs[i]) fprintf(f, "%lx %lx\n", (unsigned long)(pcs[i] - base), (unsigned long)(guards[i] - base));
  fclose(f);
}
void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop) {
  static uint32_t n;
  if (start == stop || *start) return;
  if (!base) {
    struct timespec now; clock_gettime(CLOCK_MONOTONIC, &now);
    started = (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec;
    dl_iterate_phdr(phdr, 0); atexit(dump);
  }
  for (uint32_t *x = start; x < stop; x++) *x = ++n;
}
void __sanitizer_cov_trace_pc_guard(uint32_t *guard) {
  if (!*guard) return;
  if (!__atomic_exchange_n(guard, 0, __ATOMIC_RELAXED)) return;
  uint32_t i = __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
  if (i < (1u << 20)) { pcs[i] = (uintptr_t)__builtin_return_address(0); guards[i] = (uintptr_t)guard; }
}
