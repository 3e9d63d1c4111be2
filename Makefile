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

# A release binary (Swift runtime shared, from the toolchain) whose functions are laid out in
# packaging/bulwark.order's order: the ones the usual commands run first, in the order they first
# run, so that they take 2 MiB of pages instead of being spread over 17 MB (the kernel maps 64 KiB
# of the binary around each page touched). Every module's functions get sections of their own for
# it; a name the build no longer has is skipped (OrderFileTests says when the order is stale).
# Its own build folder (its compiler flags differ from `make deb`'s); the binary is removed first
# so that a new order is linked in even when nothing was compiled.
RELEASE_SCRATCH ?= $(CURDIR)/.build-ordered
ORDER_FLAGS = -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections \
	-Xlinker '--symbol-ordering-file=$(CURDIR)/packaging/bulwark.order' -Xlinker --no-warn-symbol-ordering
release: setup
	rm -f '$(RELEASE_SCRATCH)/release.yaml' '$(RELEASE_SCRATCH)/release/description.json' '$(RELEASE_SCRATCH)/release/bulwark'
	swift build --scratch-path '$(RELEASE_SCRATCH)' -c release $(ORDER_FLAGS) --product bulwark
	@echo 'built $(RELEASE_SCRATCH)/release/bulwark'

# Regenerates packaging/bulwark.order (about 20 minutes: a coverage build, then the benchmarks'
# fleet and daemon runs; needs root, sshd and git, as they do).
order-file: setup
	scripts/order-file

# The .deb: a release binary with the Swift runtime linked in (the host needs no toolchain),
# the hardened systemd unit, /etc/default/bulwark, man pages and completions, in dist/.
# SwiftPM 6.3 fails a second release build in one scratch folder with "unknown build description"
# (it trips on the plan the previous build left), so each build plans afresh; nothing already
# compiled is compiled again. Both builds use the same flags. Not laid out in bulwark.order's
# order: with the runtime linked in, most of the resident code is the runtime's and Foundation's,
# which the order does not cover, and an ordered static build was not smaller (52.6-53.3 MiB at a
# 100-root apply's peak, against 51.0-51.5 MiB unordered; Benchmarks/README.md).
deb: setup
	rm -f $(SCRATCH)/release.yaml $(SCRATCH)/release/description.json
	swift build $(SWIFT_FLAGS) -c release --static-swift-stdlib --product bulwark
	rm -f $(SCRATCH)/release.yaml $(SCRATCH)/release/description.json
	swift build $(SWIFT_FLAGS) -c release --static-swift-stdlib --product generate-manual
	scripts/build-deb --bin $(SCRATCH)/release/bulwark --manual-tool $(SCRATCH)/release/generate-manual --out dist

clean:
	rm -rf $(SCRATCH)
