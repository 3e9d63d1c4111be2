// Linux system calls that Glibc 2.36 does not wrap, as plain (non-variadic) functions Swift can call.
#pragma once
#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

/// openat2(2) (Linux 5.6): `path` relative to `dirfd`, resolved as `resolve` (RESOLVE_* flags)
/// allows. Returns the new descriptor, or -1 with errno set (ENOSYS where the kernel or a
/// seccomp filter does not offer openat2).
static inline int bulwark_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long resolve) {
    struct open_how how = { .flags = flags, .mode = 0, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/// The type of the file system `fd` is on (statfs(2)'s `f_type`: 0x9fa0 for /proc), or -1 with
/// errno set.
static inline long bulwark_file_system_type(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    return (long)info.f_type;
}

// Extended attributes (sys/xattr.h, declared here rather than included: including it moves the
// C types it pulls in into this module, away from Glibc's).
extern ssize_t flistxattr(int fd, char *list, size_t size);
extern ssize_t fgetxattr(int fd, const char *name, void *value, size_t size);
extern int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags);
extern int fremovexattr(int fd, const char *name);

// glibc 2.29's posix_spawn_file_actions_addchdir_np (spawn.h declares it only for _GNU_SOURCE;
// declared here with the actions as a plain pointer, for the same reason as above).
extern int posix_spawn_file_actions_addchdir_np(void *actions, const char *path);

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif

/// An exclusive open file description lock (fcntl F_OFD_SETLK, Linux 3.15) over the whole of the
/// file behind `fd` (open for writing), without waiting: 0 once held, -1 with errno set (EAGAIN
/// or EACCES: another holds a lock on it). It conflicts with the process-associated locks of
/// F_SETLK and F_SETLKW (glibc's `lckpwdf`) as two of those conflict, but belongs to the open
/// file alone: closing another descriptor of the file does not release it, and two threads of
/// one process exclude each other. Released when the last descriptor of the open file closes.
static inline int bulwark_write_lock(int fd) {
    struct flock request;
    memset(&request, 0, sizeof request);
    request.l_type = F_WRLCK;
    request.l_whence = SEEK_SET;
    return fcntl(fd, F_OFD_SETLK, &request);
}

/// The pid of a process holding a lock that keeps `bulwark_write_lock` from `fd`; 0 where there
/// is none, it is another open file's (whose pid the kernel does not give), or it cannot be told.
static inline int bulwark_write_lock_holder(int fd) {
    struct flock request;
    memset(&request, 0, sizeof request);
    request.l_type = F_WRLCK;
    request.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_GETLK, &request) != 0 || request.l_type == F_UNLCK || request.l_pid < 0) return 0;
    return request.l_pid;
}

#ifndef F_SETLEASE
#define F_SETLEASE 1024
#endif

static void bulwark_lease_break_ignored(int signal) { (void)signal; }

/// Whether any process holds the file behind `fd` (opened read-only) open for writing, by the
/// kernel's own answer: a read lease (fcntl F_SETLEASE F_RDLCK) is refused with EAGAIN while any
/// descriptor of the file is open for writing. The lease is released at once. Returns 1 when
/// the file is open for writing, 0 when it is not, -1 with errno set when the kernel cannot say
/// (EACCES without CAP_LEASE on another's file, EINVAL where the file system has no leases).
///
/// A writer that opens the file in the instant the lease is held breaks it: the kernel signals
/// the lease holder with SIGIO, whose default action ends the process. SIGIO gets a handler that
/// does nothing (a handler, not SIG_IGN: programs Bulwark starts get the default back at exec).
static inline int bulwark_open_for_writing(int fd) {
    struct sigaction current;
    if (sigaction(SIGIO, NULL, &current) == 0 && current.sa_handler != bulwark_lease_break_ignored) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = bulwark_lease_break_ignored;
        action.sa_flags = SA_RESTART;
        sigemptyset(&action.sa_mask);
        if (sigaction(SIGIO, &action, NULL) != 0) return -1;
    }
    if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
        fcntl(fd, F_SETLEASE, F_UNLCK);
        return 0;
    }
    return errno == EAGAIN ? 1 : -1;
}
#endif
