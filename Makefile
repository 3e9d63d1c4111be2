# Bulwark: `make demo` and `make test` work on a fresh Debian 12 machine with Swift 6.
# SCRATCH is SwiftPM's build folder (CI keeps it under ~/.cache).
SCRATCH ?= $(CURDIR)/.build
SWIFT_FLAGS = --scratch-path $(SCRATCH)
BIN = $(SCRATCH)/debug/bulwark

.PHONY: setup build test demo benchmarks clean

setup:
	scripts/setup

build: setup
	swift build $(SWIFT_FLAGS)

# Builds the binary first: the end-to-end tests run it.
test: build
	BULWARK_BIN=$(BIN) swift test $(SWIFT_FLAGS) --disable-xctest

demo: build
	$(BIN) demo

benchmarks: setup
	cd Benchmarks && swift package --allow-writing-to-package-directory benchmark

clean:
	rm -rf $(SCRATCH)
