#include <git2.h>
// In-memory object writes (one pack per pass) and swapping a repository's object database.
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
// Bulwark's in-memory object database backend (BulwarkGit's ObjectBuffer.swift): libgit2's
// backend first, so that libgit2 can use a pointer to this as one to a `git_odb_backend`, then
// the Swift object that holds the objects (retained by the backend, released by its `free`).
typedef struct bulwark_odb_backend {
    git_odb_backend parent;
    void *objects;
} bulwark_odb_backend;
// zlib, which libgit2 itself links: to check loose objects before libgit2 reads them.
#include <zlib.h>
// git_libgit2_opts is variadic (not callable from Swift): the options Bulwark sets and reads.
static inline int bulwark_git_set_cache_max_size(ssize_t bytes) {
    return git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, bytes);
}
static inline int bulwark_git_enable_caching(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_CACHING, enabled);
}
static inline int bulwark_git_set_mwindow(size_t window, size_t mappedLimit) {
    int error = git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, window);
    return error ? error : git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, mappedLimit);
}
static inline int bulwark_git_enable_fsync(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, enabled);
}
static inline ssize_t bulwark_git_cached_memory(void) {
    ssize_t current = 0, allowed = 0;
    return git_libgit2_opts(GIT_OPT_GET_CACHED_MEMORY, &current, &allowed) ? -1 : current;
}
static inline ssize_t bulwark_git_mwindow_mapped_limit(void) {
    size_t limit = 0;
    return git_libgit2_opts(GIT_OPT_GET_MWINDOW_MAPPED_LIMIT, &limit) ? -1 : (ssize_t)limit;
}
