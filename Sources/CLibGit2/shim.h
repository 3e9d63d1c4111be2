#include <git2.h>
// zlib, which libgit2 itself links: to check loose objects before libgit2 reads them.
#include <zlib.h>
