#!/usr/bin/env python3
"""Guest side of the lab (stdlib only; runs with the host's /usr/bin/python3 in the guest).

``labguest.py setup TOPOLOGY_JSON DEVICES_JSON``:
  1. loads the nvme driver and waits until every NVMe controller the topology declares is
     bound and has its namespace block device (controller names change between boots, so
     they are found by serial number);
  2. creates the declared network devices (dummy / veth, addresses, link up) and a soft-RoCE
     (rxe) device on each that asks for one;
  3. writes the device map (format: tools/lab/README.md) to DEVICES_JSON.
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

    bridges = {}
    for b in topo.get("bridges", []):
        # find the bridge's BDF from any NVMe below it (its chain position = depth)
        bdf = None
        for serial, n in nvme.items():
            d = declared[serial]
            if b["id"] in d["path"]:
                idx = d["path"].index(b["id"])
                if idx < len(n["upstream"]):
                    bdf = n["upstream"][idx]
                break
        entry = {"kind": b["kind"], "bdf": bdf, "parent": b.get("parent")}
        if bdf:
            entry["acs"] = acs(bdf)
        bridges[b["id"]] = entry

    rdma = {}
    net = {}
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
            ibdir = f"/sys/class/infiniband/{nic['rdma']}"
            deadline = time.monotonic() + 10
            while not os.path.isdir(ibdir) and time.monotonic() < deadline:
                time.sleep(0.1)
            rdma[nic["rdma"]] = {"kind": "rxe", "netdev": name, "ip": net[name]["ip"], "cidr": nic.get("ip"),
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
