#!/usr/bin/env python3
"""Guest side of the lab (stdlib only; runs with the host's /usr/bin/python3 in the guest).

``labguest.py setup TOPOLOGY_JSON DEVICES_JSON``:
  1. loads the nvme driver and waits until every NVMe controller the topology declares is
     bound and has its namespace block device (controller names change between boots, so
     they are found by serial number);
  2. creates the declared network devices (dummy / veth, addresses, link up) and a soft-RoCE
     (rxe) device on each that asks for one;
  3. brings up the declared PCI NICs (found by MAC, renamed to their declared name, address,
     link up) and, on each that asks for one, an ``rxe_p2p`` device of the lab's
     ``rdma_rxe_p2p`` module (insmod from the lab cache: it is not in the kernel's tree);
  4. writes the device map (format: tools/lab/README.md) to DEVICES_JSON.
Errors end with one line on stderr and exit status 1.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import time

WAIT_S = 60.0


def rd(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def sh(*argv: str) -> None:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"labguest: {' '.join(argv)} failed: {proc.stdout.strip()}")


def pci_chain(bdf: str) -> tuple[str, list[str]]:
    """(host bridge 'pci0000:00', [upstream bridge BDFs from the root down]) of a function."""
    real = os.path.realpath(f"/sys/bus/pci/devices/{bdf}")
    parts = real.split("/")
    hb = next((p for p in parts if p.startswith("pci")), "")
    chain = [p for p in parts if re.match(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", p)]
    return hb, chain[:-1]


def controllers() -> dict[str, dict]:
    """pcie NVMe controllers by serial."""
    out = {}
    for c in sorted(glob.glob("/sys/class/nvme/nvme*")):
        if rd(c + "/transport") != "pcie":
            continue
        name = os.path.basename(c)
        nss = []
        for n in sorted(glob.glob(f"{c}/nvme*n*")):
            b = os.path.basename(n)
            m = re.match(r"^nvme(\d+)(?:c\d+)?n(\d+)$", b)
            if not m:
                continue
            dev = f"/dev/nvme{m.group(1)}n{m.group(2)}"
            nss.append({"dev": dev, "nsid": int(rd(n + "/nsid", "0") or 0), "path": b})
        out[rd(c + "/serial")] = {"ctrl": name, "bdf": rd(c + "/address"), "ns": nss}
    return out


def acs(bdf: str) -> dict | None:
    """ACS capability/control of a bridge from its config space (we are root), or None."""
    try:
        with open(f"/sys/bus/pci/devices/{bdf}/config", "rb") as f:
            cfg = f.read(4096)
    except OSError:
        return None
    off = 0x100
    seen = 0
    while 0x100 <= off < len(cfg) - 4 and seen < 64:
        hdr = int.from_bytes(cfg[off:off + 4], "little")
        if hdr in (0, 0xFFFFFFFF):
            return None
        if hdr & 0xFFFF == 0x000D:
            cap = int.from_bytes(cfg[off + 4:off + 6], "little")
            ctrl = int.from_bytes(cfg[off + 6:off + 8], "little")
            return {"cap": cap, "ctrl": ctrl, "redirect": bool(ctrl & (0x4 | 0x8 | 0x20))}
        off = hdr >> 20
        seen += 1
    return None


NIC_DRIVERS = {"e1000e": "e1000e", "virtio-net-pci": "virtio_net"}


def wait_ib(name: str) -> str:
    ibdir = f"/sys/class/infiniband/{name}"
    deadline = time.monotonic() + 10
    while not os.path.isdir(ibdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    return ibdir


def netdev_by_mac(mac: str) -> str | None:
    for d in glob.glob("/sys/class/net/*"):
        if rd(d + "/address").lower() == mac.lower():
            return os.path.basename(d)
    return None


def load_rxe_p2p(module: str | None) -> None:
    """insmod the lab's rdma_rxe_p2p.ko after its dependencies (modprobe: they are in the tree)."""
    if os.path.isdir("/sys/module/rdma_rxe_p2p"):
        return
    if not module or not os.path.exists(module):
        raise SystemExit(f"labguest: the rxe_p2p module {module!r} is not visible in the guest")
    deps = subprocess.run(["modinfo", "-F", "depends", module], stdout=subprocess.PIPE,
                          text=True).stdout.strip()
    for dep in filter(None, deps.split(",")):
        sh("modprobe", dep)
    sh("insmod", module)


def pci_nics(topo: dict, net: dict, rdma: dict) -> dict:
    """Bring up the PCI NICs and their rxe_p2p devices (filling ``net`` and ``rdma``); returns
    ``{netdev: {bdf, upstream, path}}`` for the bridge lookup."""
    nics = topo.get("pci_nics", [])
    for model in sorted({n["model"] for n in nics}):
        sh("modprobe", NIC_DRIVERS[model])
    out = {}
    for nic in nics:
        deadline = time.monotonic() + WAIT_S
        while (cur := netdev_by_mac(nic["mac"])) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"labguest: no netdev with MAC {nic['mac']} ({nic['model']} {nic['name']}) "
                                 f"after {WAIT_S:.0f}s")
            time.sleep(0.2)
        name = nic["name"]
        if cur != name:
            sh("ip", "link", "set", "dev", cur, "down")
            sh("ip", "link", "set", "dev", cur, "name", name)
        if nic.get("ip"):
            sh("ip", "addr", "add", nic["ip"], "dev", name)
        sh("ip", "link", "set", name, "up")
        bdf = os.path.basename(os.path.realpath(f"/sys/class/net/{name}/device"))
        # virtio-net: the netdev's device is virtioN; its parent is the PCI function
        if not re.match(r"^[0-9a-f]{4}:", bdf):
            bdf = os.path.basename(os.path.dirname(os.path.realpath(f"/sys/class/net/{name}/device")))
        hb, chain = pci_chain(bdf)
        ip = nic["ip"].split("/")[0] if nic.get("ip") else None
        out[name] = {"bdf": bdf, "upstream": chain, "path": nic["path"]}
        net[name] = {"kind": nic["model"], "ip": ip, "cidr": nic.get("ip"), "pci": bdf, "mac": nic["mac"],
                     "host_bridge": hb, "upstream": chain, "path": nic["path"], "slot": nic["slot"]}
        if nic.get("rdma"):
            load_rxe_p2p(topo.get("rxe_p2p_module"))
            sh("rdma", "link", "add", nic["rdma"], "type", "rxe_p2p", "netdev", name)
            ibdir = wait_ib(nic["rdma"])
            pci = os.path.basename(os.path.realpath(ibdir + "/device")) if os.path.exists(ibdir + "/device") else None
            if pci != bdf:
                raise SystemExit(f"labguest: {nic['rdma']}'s device is {pci!r}, not the NIC {bdf}")
            rdma[nic["rdma"]] = {"kind": "rxe_p2p", "emulated": True, "netdev": name, "ip": ip,
                                 "cidr": nic.get("ip"), "pci": bdf, "nic_model": nic["model"],
                                 "module": "rdma_rxe_p2p", "host_bridge": hb, "upstream": chain,
                                 "path": nic["path"], "slot": nic["slot"],
                                 "node_guid": rd(ibdir + "/node_guid") or None,
                                 "state": rd(ibdir + "/ports/1/state") or None}
    return out


def setup(topo_path: str, out_path: str) -> None:
    topo = json.load(open(topo_path))
    declared = {n["serial"]: n for n in topo["nvme"]}
    if declared:
        sh("modprobe", "nvme")
    deadline = time.monotonic() + WAIT_S
    while True:
        ctrls = controllers()
        missing = [s for s in declared if s not in ctrls or not ctrls[s]["ns"]
                   or not all(os.path.exists(ns["dev"]) for ns in ctrls[s]["ns"])]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"labguest: NVMe controllers not ready after {WAIT_S:.0f}s: {', '.join(missing)}")
        time.sleep(0.2)

    nvme = {}
    for serial, decl in declared.items():
        c = ctrls[serial]
        hb, chain = pci_chain(c["bdf"])
        p2p = None
        pdir = f"/sys/bus/pci/devices/{c['bdf']}/p2pmem"
        if os.path.isdir(pdir):
            p2p = {"size": int(rd(pdir + "/size", "0")), "available": int(rd(pdir + "/available", "0")),
                   "published": rd(pdir + "/published") == "1", "allocate": os.path.exists(pdir + "/allocate")}
        nss = sorted(c["ns"], key=lambda n: n["nsid"])
        nvme[serial] = {
            "bdf": c["bdf"], "ctrl": c["ctrl"], "namespaces": [n["dev"] for n in nss],
            "cmb": bool(decl.get("cmb")), "cmb_size": decl.get("cmb", 0), "legacy_cmb": bool(decl.get("legacy_cmb")),
            "p2pmem": p2p, "disk_size": decl["disk"], "host_bridge": hb, "upstream": chain,
            "slot": decl["slot"], "path": decl["path"], "image": decl.get("image"),
        }

    rdma = {}
    net = {}
    nics = pci_nics(topo, net, rdma)
    # every PCI endpoint with its declared path and its real chain of upstream bridges
    endpoints = [(declared[s]["path"], n["upstream"]) for s, n in nvme.items()] + \
                [(n["path"], n["upstream"]) for n in nics.values()]
    bridges = {}
    for b in topo.get("bridges", []):
        # find the bridge's BDF from any endpoint below it (its chain position = depth)
        bdf = None
        for path, upstream in endpoints:
            if b["id"] in path:
                idx = path.index(b["id"])
                if idx < len(upstream):
                    bdf = upstream[idx]
                break
        entry = {"kind": b["kind"], "bdf": bdf, "parent": b.get("parent")}
        if bdf:
            entry["acs"] = acs(bdf)
        bridges[b["id"]] = entry

    for nic in topo.get("network", []):
        name, kind = nic["name"], nic["kind"]
        if kind == "dummy":
            sh("modprobe", "dummy")
            sh("ip", "link", "add", name, "type", "dummy")
        elif kind == "veth":
            sh("modprobe", "veth")
            sh("ip", "link", "add", name, "type", "veth", "peer", "name", nic["peer"]["name"])
        if nic.get("ip"):
            sh("ip", "addr", "add", nic["ip"], "dev", name)
        sh("ip", "link", "set", name, "up")
        net[name] = {"kind": kind, "ip": nic.get("ip", "").split("/")[0] or None, "cidr": nic.get("ip")}
        if kind == "veth":
            peer = nic["peer"]
            if peer.get("ip"):
                sh("ip", "addr", "add", peer["ip"], "dev", peer["name"])
            sh("ip", "link", "set", peer["name"], "up")
            net[name]["peer"] = peer["name"]
            net[peer["name"]] = {"kind": "veth", "ip": peer.get("ip", "").split("/")[0] or None,
                                 "cidr": peer.get("ip"), "peer": name}
        if nic.get("rdma"):
            sh("modprobe", "rdma_rxe")
            sh("rdma", "link", "add", nic["rdma"], "type", "rxe", "netdev", name)
            ibdir = wait_ib(nic["rdma"])
            rdma[nic["rdma"]] = {"kind": "rxe", "emulated": False, "netdev": name, "ip": net[name]["ip"],
                                 "cidr": nic.get("ip"),
                                 "pci": None, "node_guid": rd(ibdir + "/node_guid") or None,
                                 "state": rd(ibdir + "/ports/1/state") or None}

    cpu = {}
    for line in rd("/proc/cpuinfo").splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k in ("vendor_id", "cpu family", "model name") and k not in cpu:
            cpu[k] = v
        if k == "processor" and cpu.get("vendor_id"):
            break
    iommu_groups = bool(glob.glob("/sys/kernel/iommu_groups/*"))
    devmap = {
        "format": 1,
        "topology": topo["name"],
        "kernel": os.uname().release,
        "cmdline": rd("/proc/cmdline"),
        "cpu": {"vendor": cpu.get("vendor_id", ""), "family": int(cpu.get("cpu family", "0") or 0),
                "model_name": cpu.get("model name", "")},
        "iommu": {"declared": topo.get("iommu"), "active": bool(glob.glob("/sys/class/iommu/*")),
                  "groups": iommu_groups},
        "nvme": nvme,
        "providers": sorted((n["bdf"] for n in nvme.values() if n["p2pmem"]), key=str),
        "bridges": bridges,
        "rdma": rdma,
        "net": net,
        "rxe_p2p": ({"module": topo["rxe_p2p_module"], "link_type": "rxe_p2p"}
                    if topo.get("rxe_p2p_module") else None),
    }
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(devmap, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out_path)
    print(f"labguest: device map {out_path}: {len(nvme)} NVMe, {len(devmap['providers'])} p2pmem providers, "
          f"{len(rdma)} rdma")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "setup":
        setup(argv[1], argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
