"""The lab's p2p-capable RDMA NIC driver: ``rdma_rxe_p2p.ko``, built at run time and cached.

Soft-RoCE (rxe) has virtual DMA, so nvmet-rdma never sets a p2p client for it. The lab's
variant registers its ib_device with the netdev's PCI NIC as parent and DMA device (the
project's own patch, ``tools/lab/rxe_p2p/rxe_p2p.patch``; why: ``tools/lab/rxe_p2p/README.md``).
Nothing of the kernel is vendored: every input comes from Debian's packages of the lab
kernel, each ``.deb`` checked against the SHA256 and size of the signed index like
:mod:`labkit.kernel` does:

1. ``linux-headers-<release>`` and its same-build dependencies (``linux-headers-<abi>-common``,
   ``linux-kbuild-<abi>``, ``linux-base-<release>``) and ``linux-source-<major.minor>``, all at
   the kernel's exact Debian version, downloaded with a private apt state (no install);
2. a build root of the kernel's own distribution (trixie for a trixie-backports kernel: the
   kernel was built with trixie's gcc-14 and binutils, bookworm's cannot build against its
   headers), made with ``debootstrap --variant=minbase`` (signed Release, checked packages),
   with the distribution's and the backports suite's apt sources, in which ``apt-get install``
   puts the verified header packages (their dependencies -- gcc-N-for-host, pahole -- come
   from the signed suites). The root is kept (``<cache>/rxe_p2p/root-<release>``): a changed
   patch rebuilds in seconds;
3. the ``drivers/infiniband/sw/rxe`` directory of the source tarball, the patch applied, an
   out-of-tree ``make M=...`` with the kernel's compiler (``CC=x86_64-linux-gnu-gcc-N``),
   ``/proc`` mounted (objtool reads it), everything in a private mount namespace (``unshare``)
   so that no mount outlives the build, the module stripped of debug info and checked
   (``vermagic`` = the release, module name, the link type in its aliases).

The module lives in ``<cache>/rxe_p2p/<release>-<key>/`` where ``key`` hashes the patch, the
builder version and the kernel's Debian version: a new patch or kernel builds a new module,
an unchanged one reuses it without network. Building needs root (debootstrap, chroot) and
the network (the Debian mirror), like the first kernel download. Every failure is one
:class:`~labkit.LabError` line; the full output is in ``<cache>/rxe_p2p/build.log``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import LabError
from .kernel import DEFAULT_KEYRING, DEFAULT_MIRROR, Kernel, Log, PrivateApt, locked, parse_packages

BUILDER_VERSION = "1"
MODULE = "rdma_rxe_p2p"
LINK_TYPE = "rxe_p2p"
PATCH = Path(__file__).resolve().parent.parent / "rxe_p2p" / "rxe_p2p.patch"
SOURCE_DIR = "drivers/infiniband/sw/rxe"
#: what the build root needs besides what the header packages pull in
#: (binutils: gcc runs ``as`` and ``ld`` by their plain names)
ROOT_PACKAGES = ("make", "patch", "binutils", "libc6-dev")
BUILD_TIMEOUT_S = 1800


@dataclass
class RxeModule:
    """A built, checked ``rdma_rxe_p2p.ko`` for one kernel release."""

    path: str
    release: str
    kernel_version: str
    key: str
    patch_sha256: str
    sha256: str
    packages: list[dict] = field(default_factory=list)   # name, version, sha256, size
    compiler: str = ""
    build_s: float = 0.0
    built_at: float = 0.0
    steps: dict = field(default_factory=dict)             # build step -> seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> "RxeModule":
        return cls(**json.loads(path.read_text()))

    def usable(self) -> bool:
        try:
            return _sha256(Path(self.path)) == self.sha256
        except OSError:
            return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def patch_bytes() -> bytes:
    try:
        return PATCH.read_bytes()
    except OSError as exc:
        raise LabError(f"cannot read the rxe_p2p patch {PATCH}: {exc.strerror}") from None


def module_key(k: Kernel, patch: bytes) -> str:
    """What the module depends on: the patch, this builder, the kernel's exact Debian build."""
    h = hashlib.sha256(f"nvmet-p2p-rxe_p2p:{BUILDER_VERSION}\n{k.release}\n{k.version}\n".encode())
    h.update(patch)
    return h.hexdigest()[:16]


def build_distribution(suite: str) -> tuple[str, list[str]]:
    """(debootstrap suite, apt suites of the build root) for the kernel's suite."""
    base = suite[: -len("-backports")] if suite.endswith("-backports") else suite
    return base, [base] + ([suite] if suite != base else [])


# --------------------------------------------------------------------------------------------
# the packages


def source_package(release: str) -> str:
    """``7.3.4+deb13-amd64`` -> ``linux-source-7.3``."""
    m = re.match(r"^(\d+)\.(\d+)", release)
    if not m:
        raise LabError(f"cannot tell the kernel series of release {release!r}")
    return f"linux-source-{m.group(1)}.{m.group(2)}"


def select_packages(index: list[dict[str, str]], k: Kernel) -> tuple[list[dict[str, str]], dict[str, str]]:
    """(header packages to install, the source package) at the kernel's exact Debian version.

    The header set is ``linux-headers-<release>`` plus each of its dependencies that is built
    from the same source at the same version (``-common``, ``linux-kbuild-<abi>``,
    ``linux-base-<release>``); the others (compiler, pahole) come from the build root's apt.
    """
    at_version = {st["Package"]: st for st in index
                  if st.get("Version") == k.version and st.get("Package")}
    want = f"linux-headers-{k.release}"
    src = source_package(k.release)
    missing = [p for p in (want, src) if p not in at_version]
    if missing:
        raise LabError(f"{' and '.join(missing)} {k.version} not in {k.suite} (the suite moved on from "
                       f"the cached kernel: run tools/lab/run --refresh-kernel)")
    headers = [at_version[want]]
    for part in at_version[want].get("Depends", "").split(","):
        name = re.split(r"[\s(:|]", part.strip(), maxsplit=1)[0]
        if name in at_version and name not in (p["Package"] for p in headers):
            headers.append(at_version[name])
    return headers, at_version[src]


def compiler_for(headers: list[dict[str, str]]) -> str:
    """The kernel's compiler, from ``gcc-N-for-host`` in the headers' dependencies."""
    m = re.search(r"\bgcc-(\d+)-for-host\b", headers[0].get("Depends", ""))
    if not m:
        raise LabError(f"{headers[0]['Package']} names no gcc-N-for-host: cannot tell the kernel's compiler")
    return f"x86_64-linux-gnu-gcc-{m.group(1)}"


def _record(stanza: dict[str, str]) -> dict:
    return {"name": stanza["Package"], "version": stanza["Version"], "sha256": stanza.get("SHA256", ""),
            "size": int(stanza.get("Size", "0"))}


# --------------------------------------------------------------------------------------------
# running things


class Builder:
    """Runs the build's commands, their output appended to one log file."""

    def __init__(self, logfile: Path, log: Log):
        self.logfile = logfile
        self.log = log
        self.steps: dict[str, float] = {}     # what -> seconds (module.json, the README's numbers)

    def run(self, argv: list[str], what: str, cwd: Path | None = None) -> str:
        t0 = time.monotonic()
        with open(self.logfile, "a") as f:
            f.write(f"\n$ {' '.join(argv)}\n")
            f.flush()
            try:
                proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, timeout=BUILD_TIMEOUT_S,
                                      env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
            except FileNotFoundError:
                raise LabError(f"{what}: {argv[0]} not found (bash tools/lab/setup installs it)") from None
            except subprocess.TimeoutExpired:
                raise LabError(f"{what}: no result after {BUILD_TIMEOUT_S} s (log: {self.logfile})") from None
            f.write(proc.stdout)
            took = time.monotonic() - t0
            f.write(f"[{what}: exit {proc.returncode} after {took:.1f} s]\n")
        self.steps[what] = round(self.steps.get(what, 0.0) + took, 1)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
            errs = [ln for ln in lines if re.search(r"\b(error|E:|failed|cannot|Hunk|FAILED)\b", ln, re.I)]
            last = (errs or lines or ["(no output)"])[-1]
            raise LabError(f"{what} failed: {last[:300]} (log: {self.logfile})")
        return proc.stdout

    def in_root(self, root: Path, script: str, what: str) -> str:
        """``sh -c script`` chrooted in ``root`` with /proc mounted, in a private mount namespace."""
        return self.run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c",
                         'mount -t proc proc "$0/proc" && exec chroot "$0" /bin/sh -c "$1"',
                         str(root), script], what)


# --------------------------------------------------------------------------------------------
# the build root


def _root_stamp(k: Kernel, headers: list[dict[str, str]]) -> dict:
    return {"builder": BUILDER_VERSION, "release": k.release, "version": k.version, "include": list(ROOT_PACKAGES),
            "packages": [_record(st) for st in headers]}


def ensure_root(b: Builder, rroot: Path, k: Kernel, headers: list[Path], stamp: dict, mirror: str,
                keyring: str) -> Path:
    """The build root for this kernel (made once, then reused)."""
    root = rroot / f"root-{k.release}"
    stamp_file = root / ".nvmet-p2p-root.json"
    try:
        if json.loads(stamp_file.read_text()) == stamp:
            return root
    except (OSError, ValueError):
        pass
    for old in rroot.glob("root-*"):       # one root at a time: each is ~750 MB
        shutil.rmtree(old, ignore_errors=True)
    work = rroot / ".root.partial"
    shutil.rmtree(work, ignore_errors=True)
    dist, suites = build_distribution(k.suite)
    t0 = time.monotonic()
    b.log(f"rxe_p2p: build root: debootstrap {dist} from {mirror} (about 40 s) ...")
    b.run(["unshare", "--mount", "--propagation", "private", "--fork", "debootstrap",
           "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}", f"--keyring={keyring}",
           dist, str(work), mirror], f"debootstrap {dist}")
    (work / "etc/apt/sources.list").write_text(
        "".join(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {s} main\n"
                for s in suites))
    debs = work / "debs"
    debs.mkdir()
    for deb in headers:
        shutil.copyfile(deb, debs / deb.name)
    b.log(f"rxe_p2p: build root: apt-get install {', '.join(p.name.split('_')[0] for p in headers)} ...")
    b.in_root(work, "apt-get -q update && apt-get install -y -q --no-install-recommends "
              + " ".join(f"/debs/{p.name}" for p in headers) + " && rm -rf /debs /var/cache/apt/archives/*.deb",
              f"apt-get install of the kernel headers in the {dist} root")
    (work / stamp_file.name).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    work.rename(root)
    b.log(f"rxe_p2p: build root ready ({time.monotonic() - t0:.0f} s)")
    return root


# --------------------------------------------------------------------------------------------
# the module


def extract_source(b: Builder, source_deb: Path, dest: Path) -> Path:
    """The rxe directory of the kernel source tarball inside ``source_deb``, under ``dest``."""
    b.log(f"rxe_p2p: extracting {SOURCE_DIR} from {source_deb.name} ...")
    names = b.run(["dpkg-deb", "-c", str(source_deb)], f"dpkg-deb -c {source_deb.name}")
    m = re.search(r"\s(\./usr/src/(linux-source-[\d.]+)\.tar\.xz)$", names, re.M)
    if not m:
        raise LabError(f"{source_deb.name} holds no usr/src/linux-source-*.tar.xz")
    member, top = m.group(1), m.group(2)
    dest.mkdir(parents=True, exist_ok=True)
    b.run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$0" | tar -xO "$1" | xz -dc | tar -x -C "$2" "$3"',
           str(source_deb), member, str(dest), f"{top}/{SOURCE_DIR}"],
          f"extracting {SOURCE_DIR} from {source_deb.name}")
    tree = dest / top
    if not (tree / SOURCE_DIR / "Makefile").exists():
        raise LabError(f"{source_deb.name}: no {SOURCE_DIR}/Makefile in {top}.tar.xz")
    return tree


def build_module(b: Builder, root: Path, src_deb: Path, k: Kernel, cc: str, out: Path) -> None:
    """Patch and build the module in ``root``; the stripped ``.ko`` lands at ``out``."""
    build = root / "build"
    shutil.rmtree(build, ignore_errors=True)
    tree = extract_source(b, src_deb, build)
    (build / "rxe_p2p.patch").write_bytes(patch_bytes())
    rel = "/" + str(tree.relative_to(root))
    b.log(f"rxe_p2p: patch + make M={SOURCE_DIR} CC={cc} ...")
    b.in_root(root, f'cd "{rel}" && patch -p1 --no-backup-if-mismatch --forward -s < /build/rxe_p2p.patch',
              f"applying {PATCH.name} to {source_package(k.release)} {k.version}")
    b.in_root(root, f'make -s -C /usr/src/linux-headers-{k.release} M="{rel}/{SOURCE_DIR}" CC={cc} '
                    f'-j{min(2, os.cpu_count() or 1)} modules && '
                    f'x86_64-linux-gnu-strip --strip-debug "{rel}/{SOURCE_DIR}/{MODULE}.ko"',
              f"building {MODULE}.ko against linux-headers-{k.release}")
    built = tree / SOURCE_DIR / f"{MODULE}.ko"
    check_module(b, built, k.release)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, out)
    shutil.rmtree(build, ignore_errors=True)


def check_module(b: Builder, ko: Path, release: str) -> None:
    """The module is what we meant to build: its name, the kernel's vermagic, the link alias."""
    if not ko.exists():
        raise LabError(f"the build left no {ko.name} (log: {b.logfile})")
    info = {}
    for field_ in ("name", "vermagic", "alias"):
        info[field_] = b.run(["modinfo", "-F", field_, str(ko)], f"modinfo {ko.name}").split()
    if info["name"] != [MODULE]:
        raise LabError(f"{ko.name}: module name {info['name']}, expected {MODULE}")
    if not info["vermagic"] or info["vermagic"][0] != release:
        raise LabError(f"{ko.name}: vermagic {' '.join(info['vermagic'])!r} is not kernel {release}")
    if f"rdma-link-{LINK_TYPE}" not in info["alias"]:
        raise LabError(f"{ko.name}: no rdma-link-{LINK_TYPE} alias (is the patch applied?)")


def _cached(path: Path, key: str) -> RxeModule | None:
    try:
        m = RxeModule.load(path)
    except (OSError, ValueError, TypeError):
        return None
    return m if m.key == key and m.usable() else None


def ensure_module(cache: Path, k: Kernel, log: Log) -> tuple[RxeModule, bool]:
    """The ``rdma_rxe_p2p.ko`` for kernel ``k`` and whether it came from the cache."""
    patch = patch_bytes()
    key = module_key(k, patch)
    rroot = cache / "rxe_p2p"
    final = rroot / f"{k.release}-{key}"
    with locked(cache / "rxe_p2p.lock"):
        m = _cached(final / "module.json", key)
        if m is not None:
            return m, True
        if os.geteuid() != 0:
            raise LabError(f"building {MODULE}.ko needs root (debootstrap, chroot); no cached module "
                           f"for {k.release} with this patch")
        return _build(cache, rroot, final, k, key, patch, log), False


def _build(cache: Path, rroot: Path, final: Path, k: Kernel, key: str, patch: bytes, log: Log) -> RxeModule:
    t0 = time.monotonic()
    rroot.mkdir(parents=True, exist_ok=True)
    logfile = rroot / "build.log"
    logfile.write_text(f"nvmet-p2p lab: building {MODULE} for {k.release} ({k.version}), key {key}\n")
    b = Builder(logfile, log)
    mirror = os.environ.get("NVMET_P2P_LAB_MIRROR", DEFAULT_MIRROR)
    keyring = os.environ.get("NVMET_P2P_LAB_KEYRING", DEFAULT_KEYRING)
    log(f"rxe_p2p: building {MODULE}.ko for {k.release} (first use of this kernel or patch; "
        f"needs {mirror}) ...")
    apt = PrivateApt(rroot / "apt", k.suite, mirror, keyring)
    try:
        apt.update()
        index = apt.index_text()
    except LabError as exc:
        why = " ".join(str(exc).removeprefix("kernel download failed: ").split())
        raise LabError(f"building {MODULE}.ko: cannot read the {k.suite} index: {why}") from None
    headers, source = select_packages(parse_packages(index), k)
    cc = compiler_for(headers)
    debs = rroot / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    header_debs = [apt.download(st, debs) for st in headers]
    source_deb = apt.download(source, debs)
    root = ensure_root(b, rroot, k, header_debs, _root_stamp(k, headers), mirror, keyring)
    shutil.rmtree(final, ignore_errors=True)
    ko = final / f"{MODULE}.ko"
    build_module(b, root, source_deb, k, cc, ko)
    shutil.rmtree(debs, ignore_errors=True)
    m = RxeModule(path=str(ko), release=k.release, kernel_version=k.version, key=key,
                  patch_sha256=hashlib.sha256(patch).hexdigest(), sha256=_sha256(ko),
                  packages=[_record(st) for st in headers + [source]], compiler=cc,
                  build_s=round(time.monotonic() - t0, 1), built_at=time.time(), steps=b.steps)
    (final / "module.json").write_text(m.to_json())
    # modules of other patches of this kernel (other checkouts share the cache): keep 4
    others = sorted((d for d in rroot.glob(f"{k.release}-*") if d != final),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for old in others[3:]:
        shutil.rmtree(old, ignore_errors=True)
    log(f"rxe_p2p: {ko} built in {m.build_s:.0f} s")
    return m
