// libgit2's plain socket stream, replaced by one whose connections cannot hang for ever.
#pragma once

/// Registers, for every connection libgit2 opens (http, https under its TLS, ssh under
/// libssh2), a socket stream that gives up on a connect after `connect_seconds`, and whose
/// socket is shut down once nothing was received or sent on it for `idle_seconds` (read from
/// the kernel's own count, TCP_INFO, so libssh2's reads and writes on the socket count too).
/// The read or write waiting on it then fails, and the fetch or push with it, naming the wait.
/// Call after git_libgit2_init. Returns 0, or libgit2's error.
int bulwark_git_register_stream(int connect_seconds, int idle_seconds);

/// How many connections the watchdog has shut down for being idle, since the process began.
long bulwark_git_idle_shutdowns(void);
