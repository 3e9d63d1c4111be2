// Linux system calls that Glibc 2.36 does not wrap, as plain (non-variadic) functions Swift can call.
#pragma once
#ifdef __linux__
#include <errno.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

/// openat2(2) (Linux 5.6): `path` relative to `dirfd`, resolved as `resolve` (RESOLVE_* flags)
/// allows. Returns the new descriptor, or -1 with errno set (ENOSYS where the kernel or a
/// seccomp filter does not offer openat2).
static inline int bulwark_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long resolve) {
    struct open_how how = { .flags = flags, .mode = 0, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}
#endif
