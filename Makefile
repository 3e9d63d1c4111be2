# Bulwark: `make demo` and `make test` work on a fresh Debian 12 machine with Swift 6.
# SCRATCH is SwiftPM's build folder (CI keeps it under ~/.cache).
SCRATCH ?= $(CURDIR)/.build
SWIFT_FLAGS = --scratch-path $(SCRATCH)
BIN = $(SCRATCH)/debug/bulwark

.PHONY: setup build test demo benchmarks deb order-file clean

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

# The .deb: a release binary with the Swift runtime linked in (the host needs no toolchain),
# the hardened systemd unit, /etc/default/bulwark, man pages and completions, in dist/.
# SwiftPM 6.3 fails a second release build in one scratch folder with "unknown build description"
# (it trips on the plan the previous build left), so each build plans afresh; nothing already
# compiled is compiled again. Both builds use the same flags.
# RELEASE_FLAGS: every dependency's functions in sections of their own too, so that the linker
# can lay them out in packaging/bulwark.order's order (see Package.swift).
RELEASE_FLAGS = -c release --static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections
deb: setup
	rm -f $(SCRATCH)/release.yaml $(SCRATCH)/release/description.json
	swift build $(SWIFT_FLAGS) $(RELEASE_FLAGS) --product bulwark
	rm -f $(SCRATCH)/release.yaml $(SCRATCH)/release/description.json
	swift build $(SWIFT_FLAGS) $(RELEASE_FLAGS) --product generate-manual
	scripts/build-deb --bin $(SCRATCH)/release/bulwark --manual-tool $(SCRATCH)/release/generate-manual --out dist

# Regenerates packaging/bulwark.order (about 20 minutes: a coverage build, then the benchmarks'
# fleet and daemon runs; needs root, sshd and git, as they do).
order-file: setup
	scripts/order-file

clean:
	rm -rf $(SCRATCH)
