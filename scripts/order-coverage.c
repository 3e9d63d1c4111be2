// Function-entry coverage for packaging/bulwark.order (scripts/order-file): built with
// -sanitize-coverage=func,trace-pc-guard, every function calls __sanitizer_cov_trace_pc_guard with
// its own guard. The first call records where it came from (the return address, inside the code
// that ran) and the guard's address (which names the function even when LLVM merged its body
// with others' into one `…Tm` function and left it a thunk that passes its guard along), both as
// offsets from the executable's base, written at exit to $BULWARK_COV_DIR/cov.PID.
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static uintptr_t pcs[1 << 20], guards[1 << 20];
static uint32_t count;
static uintptr_t base;
static int phdr(struct dl_phdr_info *info, size_t size, void *data) { (void)size; (void)data; base = info->dlpi_addr; return 1; }
static void dump(void) {
  const char *dir = getenv("BULWARK_COV_DIR");
  if (!dir) return;
  char path[4096]; snprintf(path, sizeof path, "%s/cov.%d", dir, (int)getpid());
  FILE *f = fopen(path, "w"); if (!f) return;
  uint32_t n = __atomic_load_n(&count, __ATOMIC_ACQUIRE);
  for (uint32_t i = 0; i < n && i < (1u << 20); i++) fprintf(f, "%lx %lx\n", (unsigned long)(pcs[i] - base), (unsigned long)(guards[i] - base));
  fclose(f);
}
void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop) {
  static uint32_t n;
  if (start == stop || *start) return;
  if (!base) { dl_iterate_phdr(phdr, 0); atexit(dump); }
  for (uint32_t *x = start; x < stop; x++) *x = ++n;
}
void __sanitizer_cov_trace_pc_guard(uint32_t *guard) {
  if (!*guard) return;
  if (!__atomic_exchange_n(guard, 0, __ATOMIC_RELAXED)) return;
  uint32_t i = __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
  if (i < (1u << 20)) { pcs[i] = (uintptr_t)__builtin_return_address(0); guards[i] = (uintptr_t)guard; }
}
