# sshkeep: build, test, lint, benchmark and install.
#
#   make                  release build: target/release/sshkeep
#   make test             everything CI runs (needs OpenSSH client and server, and mandoc)
#   make lint             formatting, clippy, the man page, unsafe outside src/sys.rs
#   make bench            sshkeep against OpenSSH's ssh-agent; BENCH_ARGS=... is passed on
#   make install          PREFIX=/usr/local, DESTDIR for staging; run `make` first
#   make static           a fully static binary for scratch containers
#   make static-check     run that binary in an empty root directory (needs root)

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
BENCH_ARGS ?=
MAN = man/sshkeep.1
# Warnings and errors fail the build. -W warning hides mandoc's notes about the system's
# man page database (cross-references it cannot look up), which say nothing about the page.
MANDOC_LINT = mandoc -Tlint -W warning
STATIC_TARGET = x86_64-unknown-linux-gnu

.PHONY: all test lint check-unsafe bench install static static-check clean

all:
	$(CARGO) build --release --locked

# Unit tests and the integration tests in tests/, which start the real binary and drive it
# with ssh-add, ssh-keygen and ssh against a throwaway sshd on 127.0.0.1.
# Not --all-targets: that would also run the benchmark, which `make bench` runs on purpose.
# The release build comes first: the memory scans of tests/security.rs and tests/sealed.rs
# run against it.
# A test that cannot run here (no root, no sshd) records why in $(SKIPPED), printed last,
# after cargo's summary and whether or not the tests passed; under CI=true it fails instead.
SKIPPED = $(CURDIR)/target/skipped-tests.txt

test: all
	$(MANDOC_LINT) $(MAN)
	@rm -f $(SKIPPED)
	@echo "$(CARGO) test --locked --lib --bins --tests"; \
	SSHKEEP_SKIPPED=$(SKIPPED) $(CARGO) test --locked --lib --bins --tests; status=$$?; \
	if [ -s $(SKIPPED) ]; then \
		echo; echo "make test: SKIPPED, not passed ($$(wc -l < $(SKIPPED))):"; \
		sort $(SKIPPED) | sed 's/^/  /'; \
		echo "(CI runs them all, as root with OpenSSH's client and server installed)"; \
	fi; \
	exit $$status

lint: check-unsafe
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(MANDOC_LINT) $(MAN)

# Every `unsafe` block, fn, impl or extern lives in src/sys.rs (the pattern skips `unsafe_code`).
check-unsafe:
	! grep -rnE 'unsafe *(\{|fn|impl|extern)' src | grep -v '^src/sys.rs'

# Builds the release agent, then runs benches/agents.rs, which starts sshkeep and OpenSSH's
# ssh-agent side by side. BENCH_ARGS: --quick, --openssh PATH, --sshkeep PATH, --json PATH.
bench:
	$(CARGO) build --release --locked
	$(CARGO) bench --locked --bench agents -- $(BENCH_ARGS)

# Does not build: `sudo make install` should not run cargo as root.
install:
	@test -x target/release/sshkeep || { echo "target/release/sshkeep is missing: run make first" >&2; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 target/release/sshkeep $(DESTDIR)$(PREFIX)/bin/sshkeep
	install -m 644 $(MAN) $(DESTDIR)$(PREFIX)/share/man/man1/sshkeep.1

# A fully static glibc binary, for scratch containers. Output:
#   target/x86_64-unknown-linux-gnu/release/sshkeep
# (--target keeps the static flags away from build scripts and proc macros.)
static:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --locked --target $(STATIC_TARGET)

# Proof that the static binary needs nothing else: run it in a root directory that holds
# only the binary (chroot needs root), serve a key through it, and stop it.
static-check: static
	@root=$$(mktemp -d) && trap 'kill $$pid 2>/dev/null; rm -rf "$$root"' EXIT && \
	cp target/$(STATIC_TARGET)/release/sshkeep "$$root/" && \
	chroot "$$root" /sshkeep -V && \
	{ chroot "$$root" /sshkeep -D -a /agent.sock >/dev/null 2>&1 & pid=$$!; } && \
	for i in $$(seq 50); do [ -S "$$root/agent.sock" ] && break; sleep 0.1; done && \
	ssh-keygen -q -t ed25519 -N '' -C static-check -f "$$root/key" </dev/null && \
	SSH_AUTH_SOCK="$$root/agent.sock" ssh-add -q "$$root/key" && \
	SSH_AUTH_SOCK="$$root/agent.sock" ssh-add -l | grep -q static-check && \
	echo "static-check: the static binary serves keys from an empty root"

clean:
	$(CARGO) clean
