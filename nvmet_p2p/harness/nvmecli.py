"""The initiator side through nvme-cli: discover, connect, disconnect (``-o json``).

nvme-cli is the default (and only) backend: it comes with the distribution, matches the
kernel, and its ``-o json`` output is stable enough to parse (the shapes below). Every call
goes through an injectable ``run`` (``subprocess.run`` signature) so tests can replay real
output captured in the lab.

Shapes seen with Debian's nvme-cli 2.3 / libnvme 1.3 (lab, 7.3 kernel):
``nvme discover -o json`` -> ``{"genctr", "records": [{"trtype", "adrfam", "subtype",
"portid", "trsvcid", "subnqn", "traddr", ...}]}``; ``nvme connect -o json`` ->
``{"device": "nvme4"}``; a second connect to the same port prints ``already connected`` on
stderr and exits 1; a refused connect prints ``could not add new controller: ...``.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from nvmet_p2p import safeload
from nvmet_p2p.errors import InputError, NvmetP2PError
from nvmet_p2p.nvmet.defs import NQN_MAX


class NvmeCliError(NvmetP2PError):
    """nvme-cli failed; the message carries its stderr."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None):
        self.stderr = stderr
        self.returncode = returncode
        super().__init__(message + (f": {stderr.strip()}" if stderr.strip() else ""))


class AlreadyConnected(NvmeCliError):
    pass


@dataclass
class DiscoveryRecord:
    trtype: str
    traddr: str
    trsvcid: str
    subnqn: str
    subtype: str
    portid: int | None = None
    adrfam: str | None = None

    @property
    def is_nvm(self) -> bool:
        return self.subtype.startswith("nvme subsystem")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class HostIdentity:
    hostnqn: str
    hostid: str
    source: str          # where it came from ("argument", "/etc/nvme/hostnqn", "generated")


def host_identity(hostnqn: str | None = None, hostid: str | None = None, root: str = "/") -> HostIdentity:
    """The host NQN and ID to connect with: arguments, else ``/etc/nvme/host{nqn,id}``.

    Nothing is written: when the files are missing an NQN is derived from a fresh UUID for
    this run only (the target must allow it, or allow any host).
    """
    source = "argument"
    etc = os.path.join(root, "etc/nvme")
    if not hostnqn:
        try:
            with open(os.path.join(etc, "hostnqn")) as f:
                hostnqn = f.read().strip()
            source = "/etc/nvme/hostnqn"
        except OSError:
            hostnqn = ""
    if not hostid:
        try:
            with open(os.path.join(etc, "hostid")) as f:
                hostid = f.read().strip()
        except OSError:
            hostid = ""
    if not hostid and hostnqn and ":uuid:" in hostnqn:
        hostid = hostnqn.rsplit(":uuid:", 1)[1]
    if not hostnqn:
        hostid = hostid or str(uuid.uuid4())
        hostnqn = f"nqn.2014-08.org.nvmexpress:uuid:{hostid}"
        source = "generated"
    if not hostid:
        hostid = str(uuid.uuid4())
    if not hostnqn.startswith("nqn.") or len(hostnqn.encode()) > NQN_MAX:
        raise InputError(f"not a valid host NQN: {hostnqn!r}", where="--hostnqn")
    try:
        uuid.UUID(hostid)
    except ValueError:
        raise InputError(f"host ID must be a UUID, got {hostid!r}", where="--hostid") from None
    return HostIdentity(hostnqn=hostnqn, hostid=hostid, source=source)


def parse_discovery(text: str, where: str = "nvme discover output") -> list[DiscoveryRecord]:
    """The records of ``nvme discover -o json``; :class:`nvmet_p2p.safeload.DocumentError` (a
    ValueError) for anything else."""
    scalar = (str, int, float, type(None))
    doc = safeload.loads_json(text, where)
    safeload.check(doc, {"records": safeload.Opt([{k: safeload.Opt(scalar) for k in (
        "trtype", "traddr", "trsvcid", "subnqn", "subtype", "portid", "adrfam")}])}, where)
    out = []
    for r in doc.get("records", []):
        out.append(DiscoveryRecord(trtype=str(r.get("trtype", "")), traddr=str(r.get("traddr", "")),
                                   trsvcid=str(r.get("trsvcid", "")), subnqn=str(r.get("subnqn", "")),
                                   subtype=str(r.get("subtype", "")),
                                   portid=r.get("portid") if isinstance(r.get("portid"), int) else None,
                                   adrfam=str(r["adrfam"]) if r.get("adrfam") is not None else None))
    return out


def parse_connect(text: str, where: str = "nvme connect output") -> str:
    """The controller name ``nvme connect -o json`` printed (``{"device": "nvme4"}``)."""
    doc = safeload.loads_json(text, where)
    dev = doc.get("device") if isinstance(doc, dict) else None
    if not isinstance(dev, str) or not re.fullmatch(r"nvme\d{1,6}", dev):
        raise safeload.DocumentError(f"no controller name in nvme connect output: {text[:200]!r}",
                                     where=where)
    return dev


class NvmeCli:
    """nvme-cli as the harness uses it."""

    def __init__(self, nvme: str = "nvme", run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 timeout: float = 120.0):
        self.nvme = nvme
        self._run = run
        self.timeout = timeout
        self.log: list[dict] = []      # every command run, for results.json

    def _call(self, args: list[str]) -> subprocess.CompletedProcess:
        cmd = [self.nvme] + args
        try:
            r = self._run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise NvmeCliError(f"{self.nvme} not found; install Debian's nvme-cli package") from None
        except subprocess.TimeoutExpired:
            raise NvmeCliError(f"{' '.join(cmd)} did not finish in {self.timeout:.0f} s") from None
        self.log.append({"command": cmd, "returncode": r.returncode,
                         "stderr": (r.stderr or "").strip()[-500:]})
        return r

    @staticmethod
    def _address(transport: str, traddr: str | None, trsvcid: str | None) -> list[str]:
        a = ["-t", transport]
        if transport != "loop":
            if not traddr:
                raise InputError(f"transport {transport} needs an address", where="--traddr")
            a += ["-a", traddr]
            if trsvcid:
                a += ["-s", str(trsvcid)]
        return a

    def discover(self, transport: str, traddr: str | None, trsvcid: str | None,
                 host: HostIdentity) -> list[DiscoveryRecord]:
        args = ["discover"] + self._address(transport, traddr, trsvcid) + \
               ["-q", host.hostnqn, "-I", host.hostid, "-o", "json"]
        r = self._call(args)
        if r.returncode != 0:
            raise NvmeCliError(f"nvme discover at {transport} {traddr}:{trsvcid} failed", r.stderr, r.returncode)
        try:
            return parse_discovery(r.stdout)
        except ValueError as e:
            raise NvmeCliError(f"nvme discover printed no JSON ({e})", r.stderr) from None

    def connect(self, transport: str, traddr: str | None, trsvcid: str | None, nqn: str,
                host: HostIdentity, nr_io_queues: int | None = None,
                queue_size: int | None = None, extra: list[str] | None = None) -> str:
        """Connect; returns the new controller name (``nvme4``)."""
        args = ["connect"] + self._address(transport, traddr, trsvcid) + \
               ["-n", nqn, "-q", host.hostnqn, "-I", host.hostid, "-o", "json"]
        if nr_io_queues:
            args += ["-i", str(nr_io_queues)]
        if queue_size:
            args += ["-Q", str(queue_size)]
        args += list(extra or [])
        r = self._call(args)
        if r.returncode != 0:
            cls = AlreadyConnected if "already connected" in (r.stderr or "") else NvmeCliError
            raise cls(f"nvme connect to {nqn} at {transport} {traddr or ''}:{trsvcid or ''} failed",
                      r.stderr, r.returncode)
        try:
            return parse_connect(r.stdout)
        except ValueError as e:
            raise NvmeCliError(f"nvme connect printed no device ({e})", r.stderr) from None

    def disconnect(self, ctrl: str) -> None:
        r = self._call(["disconnect", "-d", ctrl])
        if r.returncode != 0:
            raise NvmeCliError(f"nvme disconnect -d {ctrl} failed", r.stderr, r.returncode)
