#include <git2.h>
// In-memory object writes (one pack per pass) and swapping a repository's object database.
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
// zlib, which libgit2 itself links: to check loose objects before libgit2 reads them.
#include <zlib.h>
// git_libgit2_opts is variadic (not callable from Swift): the one option Bulwark sets.
static inline int bulwark_git_set_cache_max_size(ssize_t bytes) {
    return git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, bytes);
}
