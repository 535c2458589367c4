"""Kernel provisioning: the newest p2pdma-enabled Debian kernel, through apt, cached.

Debian's stable kernels are built without ``CONFIG_PCI_P2PDMA``; the backports suite has it.
Versions move, so nothing is hard-coded: we read the suite's package index with a *private*
apt state (its own sources list, lists, cache and an empty dpkg status: the host's apt
configuration and package lists are never written), list the ``linux-image-<ABI>-amd64``
packages newest first, and take the first whose config has ``CONFIG_PCI_P2PDMA=y``.

Both package layouts are handled: the classic one (``linux-image-<ABI>`` holds vmlinuz, config
and modules) and the split one of the 7.x kernels (``linux-image-<ABI>`` is a small meta
package depending on ``linux-base-<ABI>`` (vmlinuz, config), ``linux-binary-<ABI>`` and
``linux-modules-<ABI>``): we download the image package and every dependency named after the
same ABI. Each ``.deb`` is downloaded with ``apt-get download`` (not installed), checked
against the SHA256 and size of its entry in the signed index, extracted with ``dpkg-deb -x``,
and the module tree gets ``depmod``. The result lives under ``<cache>/kernels/<ABI>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from . import LabError, debver

DEFAULT_SUITE = "trixie-backports"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ARCH = "amd64"
FLAVOUR = "amd64"
REQUIRED_CONFIG = {"CONFIG_PCI_P2PDMA": "y"}
#: options the lab itself relies on (a kernel lacking them cannot boot the lab at all)
LAB_CONFIG = ("CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS", "CONFIG_OVERLAY_FS", "CONFIG_CONFIGFS_FS",
              "CONFIG_BLK_DEV_NVME", "CONFIG_NVME_TARGET")

Log = Callable[[str], None]


def cache_root() -> Path:
    """``$NVMET_P2P_LAB_CACHE``, else ``$XDG_CACHE_HOME/nvmet-p2p/lab``, else ``~/.cache/...``."""
    if os.environ.get("NVMET_P2P_LAB_CACHE"):
        return Path(os.environ["NVMET_P2P_LAB_CACHE"]).absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).absolute() / "nvmet-p2p" / "lab"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``: several developers may share one cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# the package index


def parse_packages(text: str) -> list[dict[str, str]]:
    """Parse a Debian ``Packages`` index (RFC-822 stanzas) into dicts."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, None
            continue
        if line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
            continue
        k, sep, v = line.partition(":")
        if not sep:
            continue
        key = k.strip()
        cur[key] = v.strip()
    if cur:
        out.append(cur)
    return out


def depends_names(stanza: dict[str, str]) -> list[str]:
    """Package names in ``Depends`` (first alternative of each; versions dropped)."""
    names = []
    for part in stanza.get("Depends", "").split(","):
        alt = part.split("|")[0].strip()
        if alt:
            names.append(re.split(r"[\s(:]", alt, maxsplit=1)[0])
    return names


_IMAGE_RE = re.compile(r"^linux-image-(\d+\.\d+[0-9A-Za-z.+~]*-" + re.escape(FLAVOUR) + r")$")


@dataclass
class Candidate:
    release: str                      # the kernel ABI / uname -r, e.g. 7.3.4+deb13-amd64
    version: str                      # Debian version of linux-image-<release>
    packages: list[dict[str, str]]    # stanzas to download (image + same-ABI dependencies)


def candidates(index: list[dict[str, str]]) -> list[Candidate]:
    """Every ``linux-image-<ABI>-amd64`` of the index, newest Debian version first.

    The package set of a candidate is the image package plus each of its dependencies whose
    name carries the same ABI (``linux-base-<ABI>``, ``linux-binary-<ABI>``,
    ``linux-modules-<ABI>``), which covers the classic and the split layout.
    """
    by_name: dict[str, dict[str, str]] = {}
    for st in index:
        name = st.get("Package", "")
        if name and (name not in by_name
                     or debver.compare(st.get("Version", "0"), by_name[name].get("Version", "0")) > 0):
            by_name[name] = st
    out = []
    for name, st in by_name.items():
        m = _IMAGE_RE.match(name)
        if not m:
            continue
        release = m.group(1)
        pkgs = [st]
        for dep in depends_names(st):
            if dep != name and dep.endswith("-" + release) and dep in by_name:
                pkgs.append(by_name[dep])
        out.append(Candidate(release=release, version=st.get("Version", "0"), packages=pkgs))
    out.sort(key=lambda c: debver.sort_key(c.version), reverse=True)
    return out


def parse_config(text: str) -> dict[str, str]:
    """``CONFIG_X=y`` / ``# CONFIG_X is not set`` lines -> ``{"CONFIG_X": "y"|"m"|"n"|value}``."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
            continue
        m = re.match(r"^# (CONFIG_\w+) is not set", line)
        if m:
            out[m.group(1)] = "n"
    return out


# --------------------------------------------------------------------------------------------
# private apt


class PrivateApt:
    """apt-get with its own sources, lists, cache and dpkg status under ``root``."""

    def __init__(self, root: Path, suite: str, mirror: str, keyring: str):
        self.root = root
        self.suite = suite
        self.mirror = mirror
        self.keyring = keyring

    def _opts(self) -> list[str]:
        r = self.root
        return [
            "-o", f"Dir::Etc::SourceList={r / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={r / 'sources.list.d'}",
            "-o", f"Dir::State={r / 'state'}",
            "-o", f"Dir::State::Lists={r / 'lists'}",
            "-o", f"Dir::State::status={r / 'status'}",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", "Dir::Etc::Preferences=/dev/null",
            "-o", f"Dir::Etc::PreferencesParts={r / 'preferences.d'}",
            "-o", "Acquire::Languages=none",
            "-o", f"APT::Architecture={ARCH}",
            "-o", f"APT::Architectures::={ARCH}",
            "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=1",
            "-q",
        ]

    def prepare(self) -> None:
        r = self.root
        for d in ("lists/partial", "cache/archives/partial", "state", "sources.list.d", "preferences.d"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "status").touch()
        (r / "sources.list").write_text(
            f"deb [signed-by={self.keyring}] {self.mirror} {self.suite} main\n")

    last_warning = ""

    def _run(self, args: list[str], cwd: Path | None = None) -> None:
        if not shutil.which("apt-get"):
            raise LabError("apt-get not found: the lab provisions its kernel through apt (Debian host needed)")
        proc = subprocess.run(["apt-get", *self._opts(), *args], cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        warns = [ln.strip() for ln in proc.stdout.splitlines() if ln.startswith(("W:", "E:", "Err:"))
                 and "unsandboxed" not in ln]
        warns.sort(key=lambda ln: {"E:": 0, "W:": 1}.get(ln[:2], 2))
        self.last_warning = warns[0][:300] if warns else ""
        if proc.returncode != 0:
            errs = [ln for ln in proc.stdout.splitlines() if ln.startswith(("E:", "Err"))]
            last = (errs or proc.stdout.strip().splitlines() or ["(no output)"])[-1]
            raise LabError(f"apt-get {args[0]} failed ({self.suite}): {last.strip()}")

    def update(self) -> None:
        self.prepare()
        self._run(["update"])

    def index_text(self) -> str:
        lists = self.root / "lists"
        files = sorted(p for p in lists.glob(f"*_dists_{self.suite}_main_binary-{ARCH}_Packages*"))
        if not files:
            why = f": {self.last_warning}" if self.last_warning else f" (looked in {lists})"
            raise LabError(f"kernel download failed: no {self.suite} package index for {ARCH} "
                           f"after apt-get update{why}")
        texts = []
        for f in files:
            proc = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(f)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                raise LabError(f"cannot read package index {f}: {proc.stderr.decode().strip()}")
            texts.append(proc.stdout.decode("utf-8", "replace"))
        return "\n\n".join(texts)

    def download(self, stanza: dict[str, str], dest: Path) -> Path:
        """Download one package into ``dest`` and verify it against its index entry."""
        dest.mkdir(parents=True, exist_ok=True)
        name, version = stanza["Package"], stanza["Version"]
        target = dest / os.path.basename(stanza["Filename"])
        if not (target.exists() and _verify(target, stanza, raise_=False)):
            target.unlink(missing_ok=True)
            self._run(["download", f"{name}={version}"], cwd=dest)
            if not target.exists():
                got = sorted(p.name for p in dest.glob(f"{name}_*.deb"))
                if len(got) != 1:
                    raise LabError(f"apt-get download {name}={version}: expected {target.name}, found {got}")
                (dest / got[0]).rename(target)
            _verify(target, stanza)
        return target


def _verify(path: Path, stanza: dict[str, str], raise_: bool = True) -> bool:
    want = stanza.get("SHA256", "").lower()
    size = int(stanza.get("Size", "-1"))
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    ok = bool(want) and h.hexdigest() == want and (size < 0 or n == size)
    if not ok and raise_:
        path.unlink(missing_ok=True)
        raise LabError(f"{path.name}: SHA256/size does not match the apt index "
                       f"(got {h.hexdigest()} / {n} bytes, index says {want or '?'} / {size}); file removed")
    return ok


# --------------------------------------------------------------------------------------------
# the provisioned kernel


@dataclass
class Kernel:
    release: str
    version: str
    suite: str
    tree: str
    vmlinuz: str
    moddir: str           # directory that becomes /lib/modules/<release> in the guest
    config: str
    packages: list[dict] = field(default_factory=list)   # name, version, sha256, size
    p2pdma: bool = True
    provisioned_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> "Kernel":
        return cls(**json.loads(path.read_text()))

    def usable(self) -> bool:
        return all(os.path.exists(p) for p in (self.vmlinuz, self.config,
                                               os.path.join(self.moddir, "modules.dep")))


def _find(tree: Path, release: str) -> tuple[Path | None, Path | None, Path | None]:
    """(vmlinuz, config, module dir) in an extracted tree, classic or merged-/usr layout."""
    vmlinuz = config = moddir = None
    for base in (tree / "usr/lib/modules" / release, tree / "lib/modules" / release):
        if base.is_dir():
            moddir = moddir or base
            if (base / "vmlinuz").exists():
                vmlinuz = vmlinuz or base / "vmlinuz"
            if (base / "config").exists():
                config = config or base / "config"
    for boot in (tree / "boot", tree / "usr/lib/linux" / release):
        if (boot / f"vmlinuz-{release}").exists():
            vmlinuz = vmlinuz or boot / f"vmlinuz-{release}"
        if (boot / f"config-{release}").exists():
            config = config or boot / f"config-{release}"
    return vmlinuz, config, moddir


def _depmod(moddir: Path, release: str) -> None:
    # depmod -b BASE expects BASE/lib/modules/<release>
    base = moddir.parent.parent.parent
    if not shutil.which("depmod") and not os.path.exists("/usr/sbin/depmod"):
        raise LabError("depmod not found (install kmod)")
    depmod = shutil.which("depmod") or "/usr/sbin/depmod"
    proc = subprocess.run([depmod, "-b", str(base), release], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not (moddir / "modules.dep").exists():
        raise LabError(f"depmod -b {base} {release} failed: {proc.stdout.strip()[-300:]}")


def provision(apt: PrivateApt, cand: Candidate, kroot: Path, log: Log) -> Kernel | str:
    """Download + verify + extract one candidate. Returns the Kernel, or the reason it is unfit."""
    final = kroot / cand.release
    work = kroot / f".{cand.release}.partial"
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "tree"
    tree.mkdir(parents=True)
    debs = kroot.parent / "debs"
    pkgs = sorted(cand.packages, key=lambda st: int(st.get("Size", "0")))  # small (config) first
    config = None
    done = []
    for st in pkgs:
        mb = int(st.get("Size", "0")) / 1e6
        log(f"downloading {st['Package']}={st['Version']} ({mb:.1f} MB) ...")
        deb = apt.download(st, debs)
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise LabError(f"dpkg-deb -x {deb.name} failed: {proc.stdout.strip()[-300:]}")
        done.append({"name": st["Package"], "version": st["Version"], "sha256": st.get("SHA256", ""),
                     "size": int(st.get("Size", "0"))})
        deb.unlink()  # verified and extracted: the tree is the cache
        _, config, _ = _find(tree, cand.release)
        if config is not None:
            cfg = parse_config(config.read_text(errors="replace"))
            missing = [f"{k}={cfg.get(k, 'n')}" for k, v in REQUIRED_CONFIG.items() if cfg.get(k) != v]
            if missing:
                shutil.rmtree(work, ignore_errors=True)
                return f"{cand.release}: {', '.join(missing)}"
            lab_missing = [k for k in LAB_CONFIG if cfg.get(k, "n") == "n"]
            if lab_missing:
                shutil.rmtree(work, ignore_errors=True)
                return f"{cand.release}: lacks {', '.join(lab_missing)}"
    vmlinuz, config, moddir = _find(tree, cand.release)
    if vmlinuz is None or config is None or moddir is None:
        shutil.rmtree(work, ignore_errors=True)
        return (f"{cand.release}: packages {[p['name'] for p in done]} hold no "
                f"{'vmlinuz' if vmlinuz is None else 'config' if config is None else 'module tree'}")
    log(f"depmod {cand.release} ...")
    _depmod(moddir, cand.release)
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    rel = lambda p: str(final / p.relative_to(work))  # noqa: E731
    k = Kernel(release=cand.release, version=cand.version, suite=apt.suite, tree=str(final / "tree"),
               vmlinuz=rel(vmlinuz), moddir=rel(moddir), config=rel(config), packages=done,
               provisioned_at=time.time())
    (final / "kernel.json").write_text(k.to_json())
    return k


def ensure_kernel(cache: Path, log: Log, refresh: bool = False, release: str | None = None) -> tuple[Kernel, bool]:
    """The kernel to boot and whether it came from the cache.

    Without ``refresh`` a kernel already provisioned is reused (no network). ``release`` pins an
    ABI (it must exist in the suite). The suite, mirror and keyring can be changed with
    ``NVMET_P2P_LAB_SUITE`` / ``NVMET_P2P_LAB_MIRROR`` / ``NVMET_P2P_LAB_KEYRING``.
    """
    kroot = cache / "kernels"
    current = kroot / "current.json"
    suite = os.environ.get("NVMET_P2P_LAB_SUITE", DEFAULT_SUITE)
    with locked(cache / "kernel.lock"):
        if not refresh:
            path = (kroot / release / "kernel.json") if release else current
            if path.exists():
                try:
                    k = Kernel.load(path)
                except (OSError, ValueError, TypeError):
                    k = None
                if k and k.usable() and k.suite == suite:
                    return k, True
        apt = PrivateApt(cache / "apt", suite,
                         os.environ.get("NVMET_P2P_LAB_MIRROR", DEFAULT_MIRROR),
                         os.environ.get("NVMET_P2P_LAB_KEYRING", DEFAULT_KEYRING))
        log(f"resolving the newest {FLAVOUR} kernel with CONFIG_PCI_P2PDMA=y in {suite} "
            f"(private apt state {apt.root}) ...")
        apt.update()
        cands = candidates(parse_packages(apt.index_text()))
        if release:
            cands = [c for c in cands if c.release == release]
        if not cands:
            what = f"linux-image-{release}" if release else f"linux-image-*-{FLAVOUR}"
            raise LabError(f"no {what} package in {suite} ({ARCH}): no kernel to boot")
        rejected = []
        for cand in cands:
            cached = kroot / cand.release / "kernel.json"
            if cached.exists():
                try:
                    k = Kernel.load(cached)
                    if k.usable() and k.version == cand.version:
                        current.write_text(k.to_json())
                        return k, True
                except (OSError, ValueError, TypeError):
                    pass
            result = provision(apt, cand, kroot, log)
            if isinstance(result, Kernel):
                current.write_text(result.to_json())
                if rejected:
                    log(f"skipped (not p2pdma-capable): {'; '.join(rejected)}")
                return result, False
            rejected.append(result)
            log(f"rejected {result}")
            if len(rejected) >= 3:
                break
        raise LabError(f"no p2pdma-enabled kernel in {suite}: newest candidates lack it "
                       f"({'; '.join(rejected)})")
