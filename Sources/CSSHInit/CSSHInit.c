// libssh2, which Debian's libgit2 links for ssh:// remotes, initialises its crypto backend from
// git_libgit2_init. With OpenSSL that is loading and registering OpenSSL's builtin ENGINEs: about
// 1.5 MiB of libcrypto resident in every process, whether or not it ever speaks SSH. OpenSSL 1.1
// and later initialises itself on first use (its configuration file was loaded lazily before
// this too), so libssh2 is initialised first without it (LIBSSH2_INIT_NO_CRYPTO) and libgit2's
// own libssh2_init then only counts. Only for the OpenSSL backend: with mbedTLS the skipped step
// seeds libssh2's random generator, with libgcrypt it sets libgcrypt up. The backend is read from
// the libraries libssh2's own object needs (libcrypto.so.3 or libcrypto.so.1.1).
#define _GNU_SOURCE
#include "CSSHInit.h"
#include <dlfcn.h>
#include <link.h>
#include <string.h>

struct query { const char *object; const char *const *names; int found; };

static int inspect(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct query *query = data;
    if (!info->dlpi_name || strcmp(info->dlpi_name, query->object) != 0) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
        const ElfW(Dyn) *dynamic = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        const char *strings = NULL;
        for (const ElfW(Dyn) *d = dynamic; d->d_tag != DT_NULL; d++)
            if (d->d_tag == DT_STRTAB) strings = (const char *)d->d_un.d_ptr;  // relocated by ld.so
        if (!strings) return 1;
        for (const ElfW(Dyn) *d = dynamic; d->d_tag != DT_NULL; d++) {
            if (d->d_tag != DT_NEEDED) continue;
            for (const char *const *name = query->names; *name; name++)
                if (strcmp(strings + d->d_un.d_val, *name) == 0) query->found = 1;
        }
    }
    return 1;
}

int bulwark_object_needs(const void *symbol, const char *const *names) {
    Dl_info info;
    if (!symbol || !dladdr(symbol, &info) || !info.dli_fname) return 0;
    struct query query = { info.dli_fname, names, 0 };
    dl_iterate_phdr(inspect, &query);
    return query.found;
}

int bulwark_ssh_defer_crypto_init(void) {
    static const char *const openssl[] = { "libcrypto.so.3", "libcrypto.so.1.1", NULL };
    int (*init)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "libssh2_init");
    if (!init || !bulwark_object_needs((const void *)init, openssl)) return 1;
    return init(0x0001 /* LIBSSH2_INIT_NO_CRYPTO */) == 0 ? 0 : 1;
}
