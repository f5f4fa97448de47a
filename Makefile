# One-command set-up and the test entry points. `make test` is what CI runs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UML_RUN := ../shared/tools/uml-run
VM_RUN := ../shared/tools/vm-run
APT_PACKAGES := iproute2 nftables libnftables1 wireguard-go wireguard-tools dnsmasq \
	kea-dhcp4-server kea-dhcp6-server etcd-server user-mode-linux qemu-system-x86 \
	linux-image-amd64 busybox-static tcpdump iputils-ping strace
PYTEST := $(BIN)/pytest -q -p no:cacheprovider

.PHONY: setup apt venv test test-unit test-netns test-uml test-vm lint bench demo clean proto

setup: apt venv

# Installs only what is missing, so a second run costs one dpkg-query.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/python -c "import nftables, pyroute2, pydantic, ruamel.yaml"
	touch $@

test: setup
	$(MAKE) --no-print-directory lint test-unit test-netns test-uml test-vm

test-unit:
	$(PYTEST) tests/unit

test-netns:
	$(PYTEST) tests/netns

# One UML boot for the whole uml-marked set. uml-run exits 125 when the UML kernel cannot
# boot: seen on hosts with AMX (UML 6.1 panics at init, "ptrace set fp regs failed, errno =
# 14"). Then the same set runs in the QEMU VM, whose Debian kernel has bonding, 8021q and
# dummy too: said loudly, never skipped.
test-uml:
	@$(UML_RUN) --modules "dummy 8021q bonding veth bridge macvlan tun" -- \
		env NETD_KERNEL=uml $(PYTEST) tests/uml; rc=$$?; \
	if [ $$rc -eq 125 ]; then \
		echo "test-uml: the UML kernel does not boot on this host; running tests/uml in the QEMU VM instead"; \
		$(VM_RUN) -- env NETD_KERNEL=uml TMPDIR=/dev/shm $(PYTEST) tests/uml; rc=$$?; \
	fi; exit $$rc

# One QEMU boot for the whole vm-marked set. TMPDIR on the VM's tmpfs: its 9p root cannot
# ftruncate unlinked files, which breaks pytest's output capture.
test-vm:
	$(VM_RUN) -- env NETD_KERNEL=vm TMPDIR=/dev/shm $(PYTEST) tests/vm

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy cosi netd operators discovery_client discovery_service etcd_client cluster kubespan machined netctl demo

bench: setup
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/apply.py
	$(BIN)/python bench/api.py

demo: setup
	$(BIN)/python -m demo

# Regenerate the gRPC modules (committed): the machined API and the discovery service API.
proto: venv
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		machined/api/machined.proto
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		discovery_client/api/cluster.proto discovery_client/api/affiliate.proto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
