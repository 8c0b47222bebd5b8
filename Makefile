# Cairn — build the appliance, boot it in qemu, run the tests.
# Everything a fresh Debian 12 machine needs is installed by `make deps` (as root).

SHELL      := /bin/bash
GO         ?= go
BUILD      := build
CACHE      ?= $(HOME)/.cache/cairn
TEMPL      := $(shell $(GO) env GOPATH)/bin/templ
TEMPL_VER  := v0.3.977
# Guest binaries: qemu's default CPU model under TCG does not run x86-64-v2 code.
GUEST_ENV  := CGO_ENABLED=0 GOAMD64=v1
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/cairn-os/cairn/supervisor.Version=$(VERSION)

export CAIRN_CACHE := $(CACHE)

.PHONY: bench-storage bench-net all deps assets generate build initramfs iso run test check libvirtd test-go test-qemu bench lock clean

all: iso

## deps: install the Debian packages and Go tools the build and the tests need (root).
deps:
	@missing=$$(sed -e 's/#.*//' -e 's/[[:space:]]*$$//' configs/host-packages.txt | grep -v '^$$' | while read p; do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(TEMPL) || $(GO) install github.com/a-h/templ/cmd/templ@$(TEMPL_VER)

## assets: vendor the web console's npm packages into ui/static/vendor (embedded at build).
assets:
	@$(MAKE) -s -C ui/static vendor

## generate: templ components → *_templ.go (committed; CI checks they are current).
generate:
	$(TEMPL) generate

## build: the supervisor, the CLI and the image builder into build/bin.
build: assets
	@mkdir -p $(BUILD)/bin
	$(GUEST_ENV) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BUILD)/bin/supervisor ./cmd/supervisor
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BUILD)/bin/cairn ./cmd/cairn
	$(GO) build -trimpath -o $(BUILD)/bin/cairn-build ./cmd/cairn-build

## initramfs: the compute node's kernel and initramfs (build/compute/{vmlinuz,initramfs.cpio.zst}).
initramfs: build
	$(BUILD)/bin/cairn-build initramfs --supervisor $(BUILD)/bin/supervisor --version $(VERSION) --out $(BUILD)/compute

## iso: the admin ISO (build/cairn.iso), BIOS + UEFI, CD + USB.
iso: initramfs
	$(BUILD)/bin/cairn-build iso --supervisor $(BUILD)/bin/supervisor --compute $(BUILD)/compute --version $(VERSION) --out $(BUILD)/cairn.iso

## lock: re-resolve configs/packages/*.txt against Debian and rewrite configs/packages.lock.
lock:
	@mkdir -p $(BUILD)/bin
	$(GO) build -trimpath -o $(BUILD)/bin/cairn-build ./cmd/cairn-build
	$(BUILD)/bin/cairn-build lock

## run: build everything, boot the admin ISO and one PXE-booted compute node in qemu.
run: deps iso
	$(GO) run ./cmd/cairn-qemu --iso $(BUILD)/cairn.iso --work $(BUILD)/run

## test: every tier. Installs what it needs first.
test: deps assets
	@$(MAKE) -s check
	@$(MAKE) -s libvirtd
	@$(MAKE) -s test-go
	@$(MAKE) -s iso
	@$(MAKE) -s test-qemu

## check: formatting, generated files and vet.
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@$(TEMPL) generate >/dev/null
	@git diff --exit-code --stat -- '*_templ.go' || { echo "templ generate changed *_templ.go: commit them"; exit 1; }
	$(GO) vet ./...

## libvirtd: start the host's virtlogd and libvirtd for the host tier (root).
libvirtd:
	@getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
	@id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
	@mkdir -p /var/log/libvirt/qemu /run/libvirt
	@# What udev does on a normal Debian host: without it libvirt, checking as
	@# libvirt-qemu, finds /dev/kvm unusable and re-probes qemu on every call.
	@[ ! -e /dev/kvm ] || { chgrp kvm /dev/kvm 2>/dev/null || { groupadd -r kvm && chgrp kvm /dev/kvm; }; chmod 0660 /dev/kvm; }
	@pgrep -x virtlogd >/dev/null || virtlogd -d
	@pgrep -x libvirtd >/dev/null || libvirtd -d
	@for i in $$(seq 100); do [ -S /run/libvirt/libvirt-sock ] && exit 0; sleep 0.1; done; echo "libvirtd did not start"; exit 1

## test-go: the unit and host tiers (the host tier needs root; it skips, saying why, otherwise).
test-go:
	$(GO) test -count=1 -p 2 -timeout 20m $$($(GO) list ./... | grep -v /qemu-tests)

## test-qemu: boot the built ISO and a PXE compute node in qemu and check them.
test-qemu:
	@mkdir -p $(BUILD)/qemu-tests && rm -f $(BUILD)/qemu-tests/failures.log
	@# The full output is in $(BUILD)/qemu-tests.log; on a failure the failing checks'
	@# messages with the VMs' console tails are printed last.
	CAIRN_ISO=$(CURDIR)/$(BUILD)/cairn.iso $(GO) test -count=1 -p 1 -timeout 40m -v ./qemu-tests/... 2>&1 | tee $(BUILD)/qemu-tests.log | grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok |panic)|_test.go:'; \
	rc=$${PIPESTATUS[0]}; \
	if [ $$rc != 0 ] && [ -s $(BUILD)/qemu-tests/failures.log ]; then echo "--- what the failing checks saw ($(BUILD)/qemu-tests/failures.log) ---"; cat $(BUILD)/qemu-tests/failures.log; fi; \
	exit $$rc

## bench-storage: the servers and images figures in docs/benchmarks.md (root, libvirtd).
bench-storage: deps libvirtd
	$(GO) run ./bench/storage -out docs/benchmarks.md

## bench-net: the IP mapping figures in docs/benchmarks.md (root, iperf3).
bench-net: deps
	$(GO) run ./bench/net -out docs/benchmarks.md

## bench: the side-by-side figures in docs/benchmarks.md.
bench: iso
	$(GO) run ./bench --iso $(BUILD)/cairn.iso --compute $(BUILD)/compute --out docs/benchmarks.md

clean:
	rm -rf $(BUILD)
