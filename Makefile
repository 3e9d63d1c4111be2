# Bulwark: `make demo` and `make test` work on a fresh Debian 12 machine with Swift 6.
# SCRATCH is SwiftPM's build folder (CI keeps it under ~/.cache).
SCRATCH ?= $(CURDIR)/.build
SWIFT_FLAGS = --scratch-path $(SCRATCH)
BIN = $(SCRATCH)/debug/bulwark

.PHONY: setup build test demo benchmarks release deb order-file clean

setup:
	scripts/setup

# generate-manual (swift-argument-parser's) turns --help into man pages: the package tests use it.
build: setup
	swift build $(SWIFT_FLAGS)
	swift build $(SWIFT_FLAGS) --product generate-manual

# Builds the binary first: the end-to-end tests run it.
test: build
	BULWARK_BIN=$(BIN) swift test $(SWIFT_FLAGS) --disable-xctest

demo: build
	$(BIN) demo

benchmarks: setup
	cd Benchmarks && swift package --allow-writing-to-package-directory benchmark

# The release binary: the Swift runtime and Foundation linked in (the host needs no toolchain),
# every function in a section of its own, laid out in packaging/bulwark.order's order: the
# functions the usual commands run (Bulwark's, its dependencies' and the runtime's), grouped by
# the command that first needs them, ahead of the rest of the code (the kernel maps 64 KiB of the
# binary around each page touched). --no-export-dynamic: the runtime's link arguments export
# every symbol of Bulwark and its dependencies (51,000 of them, 4.7 MB of tables), and the loader's
# lookups then kept 3.4 MiB of those tables resident; nothing looks Bulwark's symbols up by name.
# A name the build no longer has is skipped (OrderFileTests says when the order is stale).
# SwiftPM 6.3 fails a second release build in one scratch folder with "unknown build
# description" (it trips on the plan the previous build left), so each build plans afresh;
# nothing already compiled is compiled again. The binary is removed first so that a new order is
# linked in even when nothing was compiled.
# RELEASE_EXTRA: more swift build options, such as `-j 1` on a shared machine.
RELEASE_SCRATCH ?= $(CURDIR)/.build-ordered
RELEASE_EXTRA ?=
RELEASE_FLAGS = --scratch-path '$(RELEASE_SCRATCH)' -c release --static-swift-stdlib \
	-Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections \
	-Xlinker '--symbol-ordering-file=$(CURDIR)/packaging/bulwark.order' -Xlinker --no-warn-symbol-ordering \
	-Xlinker --no-export-dynamic $(RELEASE_EXTRA)
release: setup
	rm -f '$(RELEASE_SCRATCH)/release.yaml' '$(RELEASE_SCRATCH)'/*/release/description.json '$(RELEASE_SCRATCH)/release/bulwark'
	swift build $(RELEASE_FLAGS) --product bulwark
	@echo 'built $(RELEASE_SCRATCH)/release/bulwark'

# Regenerates packaging/bulwark.order (about 3 minutes after `make release`: the benchmarks'
# fleet and daemon runs under valgrind's callgrind; needs root, sshd, git and valgrind).
order-file: setup
	scripts/order-file '$(RELEASE_SCRATCH)'

# The .deb: `make release`'s binary, the hardened systemd unit, /etc/default/bulwark, man pages
# and completions, in dist/. generate-manual only turns the binary's --help into man pages and
# is not shipped: the debug build's (`make build` makes it) serves; built with the release flags
# it would be linked by gold, which has no --symbol-ordering-file.
deb: release
	swift build $(SWIFT_FLAGS) --product generate-manual
	scripts/build-deb --bin '$(RELEASE_SCRATCH)/release/bulwark' --manual-tool '$(SCRATCH)/debug/generate-manual' --out dist

# Both build folders: the release one takes about 25 minutes to build again.
clean:
	rm -rf '$(SCRATCH)' '$(RELEASE_SCRATCH)'
