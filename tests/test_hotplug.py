"""Hotplug decisions on plain data (nvmet_p2p.service.hotplug): events as the lab kernel emits them
(tests/lab/test_lab_hotplug.py records the real sequences), facts as read before them."""

from nvmet_p2p.service import hotplug as hp

NQN = "nqn.2026-12.io.lab:hp"
A, B, S = "0000:03:00.0", "0000:04:00.0", "0000:05:00.0"
WWID_S = "nvme.1b36-706c61696e53-51454d55204e564d65204374726c-00000001"


def facts():
    f = hp.Facts(providers={A, B})
    f.namespaces = {
        f"{NQN}/1": hp.NsFacts(NQN, 1, True, "/dev/nvme2n1", A, "nvme2n1", "259:2", WWID_S, "plainS", S, (1,)),
        f"{NQN}/2": hp.NsFacts(NQN, 2, True, "/dev/nvme1n1", B, "nvme1n1", "259:1", "w-b", "cmbB", B, (1,)),
        f"{NQN}/3": hp.NsFacts(NQN, 3, True, "/dev/nvme0n1", A, "nvme0n1", "259:0", "w-a", "cmbA", A, (1,)),
    }
    f.ports = {1: hp.PortFacts(1, "rdma", "10.77.0.1", ("rxe0",), ("dummy0",))}
    return f


def devpath(bdf, *below):
    """The sysfs path the kernel's uevents carry (DEVPATH) for a device under sw1."""
    return "/".join(["/devices/pci0000:00/0000:00:04.0/0000:01:00.0/0000:02:00.0", bdf, *below])


def removal(bdf, block, t=10.0, udev=True):
    """The uevents of a pciehp removal in the order the lab kernel sends them (kernel source:
    DEVNAME without /dev/), each with its DEVPATH."""
    dn = f"/dev/{block}" if udev else block
    return [hp.Event("remove", "block", block, {"DEVNAME": dn, "DEVTYPE": "disk", "MAJOR": "259",
                                                "DEVPATH": devpath(bdf, "nvme/nvme0", block)}, t, 101),
            hp.Event("remove", "nvme", "nvme0", {"DEVNAME": "nvme0", "DEVPATH": devpath(bdf, "nvme/nvme0")},
                     t + 0.05, 102),
            hp.Event("unbind", "pci", bdf, {"PCI_SLOT_NAME": bdf, "DEVPATH": devpath(bdf)}, t + 0.1, 103),
            hp.Event("remove", "pci", bdf, {"PCI_SLOT_NAME": bdf, "DEVPATH": devpath(bdf)}, t + 0.12, 104)]


def test_provider_removed_names_only_the_namespaces_using_it():
    ds = hp.decide(removal(A, "nvme0n1"), facts(), {})
    kinds = {(d.kind, d.subject): d for d in ds}
    lost = kinds[("provider-lost", A)]
    assert lost.namespaces == [f"{NQN}/1", f"{NQN}/3"]          # not nsid 2 (provider B)
    assert "silently serves" in lost.detail
    # the kernel's first uevent of the removal: the namespace's block device, not the pci remove
    assert (lost.first_event, lost.first_seq) == (10.0, 101)
    back = kinds[("backing-lost", "nvme0n1")]
    assert back.namespaces == [f"{NQN}/3"] and back.facts["wwid"] == "w-a"
    assert (back.first_event, back.first_seq) == (10.0, 101)


def test_the_kernels_time_of_a_uevent_counts_not_when_udev_passed_it_on():
    evs = removal(A, "nvme0n1", t=10.0)
    for e in evs:                       # udev passed each on 0.4 s after the kernel sent it
        e.kernel_time, e.received = e.received, e.received + 0.4
    (lost,) = [d for d in hp.decide(evs, facts(), {}) if d.kind == "provider-lost"]
    assert (lost.first_event, lost.first_received) == (10.0, 10.4)


def test_first_uevent_ignores_other_devices():
    evs = removal(B, "nvme1n1", t=5.0) + removal(A, "nvme0n1", t=10.0)
    assert hp.first_uevent(evs, bdf=A).t == 10.0 and hp.first_uevent(evs, bdf=B).t == 5.0
    assert hp.first_uevent(evs, devname="nvme1n1").seq == 101
    assert hp.first_uevent(evs, bdf="0000:09:00.0") is None


def test_kernel_source_devname_without_dev_prefix_matches_too():
    ds = hp.decide(removal(S, "nvme2n1", udev=False), facts(), {})
    assert [(d.kind, d.namespaces) for d in ds] == [("backing-lost", [f"{NQN}/1"])]


def test_unrelated_device_removed_decides_nothing():
    assert hp.decide(removal("0000:06:00.0", "nvme3n1"), facts(), {}) == []


def test_backing_back_matches_by_wwid_not_by_name():
    lost = {f"backing-lost namespace {NQN}/1": {"wwid": WWID_S, "device": "nvme2n1"}}
    add = [hp.Event("add", "block", "nvme2n2", {"DEVNAME": "/dev/nvme2n2", "DEVTYPE": "disk"}, 5.0)]
    ds = hp.decide(add, facts(), lost, appeared=[hp.Appeared("nvme2n2", WWID_S, "plainS")])
    assert [(d.kind, d.subject, d.namespaces) for d in ds] == [("backing-back", "nvme2n2", [f"{NQN}/1"])]
    other = hp.decide(add, facts(), lost, appeared=[hp.Appeared("nvme2n2", "another", "x")])
    assert other == []


def test_provider_back_needs_it_published_and_a_user():
    ev = [hp.Event("add", "pci", A, {"PCI_SLOT_NAME": A}, 1.0),
          hp.Event("bind", "pci", A, {"PCI_SLOT_NAME": A, "DRIVER": "nvme"}, 2.5)]
    assert hp.decide(ev, facts(), {}, published=set()) == []        # not published (yet)
    # published before the burst and nothing recorded: these namespaces use the live device
    assert hp.decide(ev, facts(), {}, published={A}) == []
    f = facts()
    f.providers.discard(A)                                           # absent when last read
    ds = hp.decide(ev, f, {}, published={A})
    assert ds[0].kind == "provider-back" and ds[0].first_event == 1.0   # the add, not the bind
    assert ds[0].namespaces == [f"{NQN}/1", f"{NQN}/3"]
    # the bind in a later burst: the reaction still starts at the add of the earlier one
    ds = hp.decide(ev[1:], f, {}, published={A}, earlier=ev[:1])
    assert ds[0].first_event == 1.0
    f = facts()
    f.namespaces[f"{NQN}/1"].p2pmem = B                               # re-placed earlier
    del f.namespaces[f"{NQN}/3"]
    ds = hp.decide(ev, f, {f"offload-lost namespace {NQN}/1": {"provider": A}}, published={A})
    assert ds[0].namespaces == [f"{NQN}/1"]


def _choose(n, gone):
    return (B, f"re-placed on {B}") if B not in gone else (None, "none")


def test_remedies_replace_disable_and_rewrite():
    f = facts()
    ds = hp.decide(removal(A, "nvme0n1"), f, {})
    t = hp.remedies(ds, f, {}, _choose, {B})
    assert t[f"{NQN}/1"].p2pmem == B and t[f"{NQN}/1"].enable is None   # re-placed, stays up
    assert t[f"{NQN}/3"].enable is False and t[f"{NQN}/3"].p2pmem is None   # its own drive left
    assert f"{NQN}/2" not in t                                           # untouched


def test_remedies_no_other_provider_keeps_serving():
    f = facts()
    ds = hp.decide(removal(A, "nvme9n1"), f, {})
    t = hp.remedies(ds, f, {}, lambda n, g: (None, "nothing accepted"), set())
    assert f"{NQN}/1" not in t


def test_returning_provider_with_the_same_bdf_is_rewritten():
    f = facts()
    ev = [hp.Event("bind", "pci", A, {"PCI_SLOT_NAME": A}, 1.0)]
    lost = {f"offload-lost namespace {NQN}/1": {"provider": A}}
    ds = hp.decide(ev, f, lost, published={A})
    t = hp.remedies(ds, f, lost, _choose, {A, B})
    assert t[f"{NQN}/1"].rewrite_p2pmem and t[f"{NQN}/1"].p2pmem is None


def test_returning_drive_that_was_its_own_provider_gets_both():
    f = facts()
    n = f.namespaces[f"{NQN}/3"]
    n.enabled, n.block, n.wwid = False, None, None                     # disabled by the watcher
    lost = {f"backing-lost namespace {NQN}/3": {"wwid": "w-a"},
            f"offload-lost namespace {NQN}/3": {"provider": A}}
    ev = [hp.Event("add", "pci", A, {}, 1.0), hp.Event("add", "block", "nvme0n1", {"DEVTYPE": "disk"}, 1.5),
          hp.Event("bind", "pci", A, {"DRIVER": "nvme"}, 1.6)]
    ds = hp.decide(ev, f, lost, appeared=[hp.Appeared("nvme0n1", "w-a", "cmbA")], published={A})
    t = hp.remedies(ds, f, lost, _choose, {A, B})
    x = t[f"{NQN}/3"]
    assert x.enable is True and x.rewrite_p2pmem and x.device_path is None


def test_returning_kernel_name_that_moved_gets_the_new_name_by_id_stays():
    n = hp.NsFacts(NQN, 1, False, "/dev/nvme2n1", "0")
    d = hp.Decision("backing-back", "nvme2n2", facts={"devlinks": []})
    assert hp._returning_path(n, d) == "/dev/nvme2n2"
    n.device_path = "/dev/disk/by-id/nvme-x"
    assert hp._returning_path(n, d) == "/dev/disk/by-id/nvme-x"


def test_rdma_device_and_address_events_name_the_ports():
    f = facts()
    ds = hp.decide([hp.Event("remove", "infiniband", "rxe0", {}, 1.0)], f, {})
    assert ds[0].kind == "rdma-lost" and ds[0].ports == [1] and len(ds[0].namespaces) == 3
    ds = hp.decide([hp.Event("remove", "addr", "dummy0", {"ADDRESS": "10.77.0.1"}, 1.0)], f, {})
    assert ds[0].kind == "address-lost" and ds[0].ports == [1]
    assert hp.decide([hp.Event("remove", "addr", "dummy0", {"ADDRESS": "10.9.9.9"}, 1.0)], f, {}) == []
