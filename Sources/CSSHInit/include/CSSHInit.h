// libssh2's crypto initialisation, deferred where that is safe (see CSSHInit.c).
#pragma once

/// Initialises libssh2 without its crypto backend when that backend is OpenSSL 1.1 or later
/// (which initialises itself on first use). Call before git_libgit2_init. Returns 0 when
/// deferred; 1 when not (no libssh2 in the process, or another backend: then libgit2's own
/// libssh2_init initialises it as before).
int bulwark_ssh_defer_crypto_init(void);

/// Whether the loaded object that defines `symbol` names one of `names` (a NULL-terminated list
/// of exact file names) among the libraries it needs (DT_NEEDED). 0 when `symbol` is NULL or not
/// in a loaded object.
int bulwark_object_needs(const void *symbol, const char *const *names);

#include "GitStream.h"
