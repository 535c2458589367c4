"""Lab tier: referrals and a passthru subsystem through the reconciler, against the lab
kernel's nvmet (7.3: CONFIG_NVME_TARGET_PASSTHRU=y). What the plan orders around is checked
on the kernel itself first: a referral's address cannot change while it is enabled
(``nvmet_addr_*_store()`` answers EACCES), a passthru device cannot change while the passthru
controller is enabled (``nvmet_passthru_device_path_store()``: EBUSY). Then the plan's answer:
a change disables, writes and re-enables, a re-apply is zero writes, and a failed enable rolls
back to the exact tree before."""

from __future__ import annotations

import errno
import os

import pytest

from labutil import NVMET, _write, devmap, ensure_nvmet
from nvmet_p2p.nvmet import statefile
from nvmet_p2p.nvmet.apply import ApplyFailed, clear, reconcile
from nvmet_p2p.nvmet.configfs import Configfs, read_state

pytestmark = pytest.mark.lab

PT = "nqn.2026-11.io.lab:passthru"


def _doc(device: str, traddr: str) -> dict:
    return {"subsystems": [{"nqn": PT, "attr": {"allow_any_host": "1"},
                            "passthru": [{"device": {"path": device}, "enable": 1}]}],
            "ports": [{"portid": 7, "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                                             "trsvcid": "4431"}, "subsystems": [PT],
                       "referrals": [{"name": "r1", "enable": 1,
                                      "addr": {"trtype": "tcp", "adrfam": "ipv4", "traddr": traddr,
                                               "trsvcid": "4432", "portid": "8"}}]}]}


def _tree() -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(NVMET):
        for n in dirnames + filenames:
            q = os.path.join(dirpath, n)
            if os.path.islink(q):
                out[q] = "-> " + os.readlink(q)
            elif os.path.isfile(q) and os.stat(q).st_mode & 0o444:
                with open(q) as f:
                    out[q] = f.read()
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


def test_referral_and_passthru_follow_the_kernels_rules(tmp_path):
    dm = devmap()
    if dm is None:
        pytest.skip("lab test: needs the QEMU lab's device map (tools/lab/run)")
    ensure_nvmet()
    os.system("modprobe nvmet-tcp")
    ctrl, other = (f"/dev/{dm['nvme'][s]['ctrl']}" for s in ("plain", "cmbA"))
    sd = str(tmp_path / "state")
    ref, pt = f"{NVMET}/ports/7/referrals/r1", f"{NVMET}/subsystems/{PT}/passthru"
    try:
        reconcile("/", statefile.parse(_doc(ctrl, "127.0.0.2")), sd)
        live = read_state(Configfs("/"))
        assert live.subsystems[PT].passthru["device_path"] == ctrl
        assert live.subsystems[PT].passthru["enable"] == "1"
        r = live.ports[7].referrals["r1"]
        assert r.enable and (r.attrs["addr_traddr"], r.attrs["addr_portid"]) == ("127.0.0.2", "8")
        assert reconcile("/", statefile.parse(_doc(ctrl, "127.0.0.2")), sd).plan.ops == []
        # the kernel's rules the plan orders around
        with pytest.raises(OSError) as e:
            _write(f"{ref}/addr_traddr", "127.0.0.9")
        assert e.value.errno == errno.EACCES
        with pytest.raises(OSError) as e:
            _write(f"{pt}/device_path", other)
        assert e.value.errno == errno.EBUSY
        # so a change disables, writes, re-enables
        out = reconcile("/", statefile.parse(_doc(other, "127.0.0.3")), sd)
        assert out.result.writes == 6
        live = read_state(Configfs("/"))
        assert live.subsystems[PT].passthru == {**live.subsystems[PT].passthru, "device_path": other,
                                                "enable": "1"}
        assert live.ports[7].referrals["r1"].enable
        assert live.ports[7].referrals["r1"].attrs["addr_traddr"] == "127.0.0.3"
        # a device the kernel cannot open: refused at enable, rolled back exactly
        before = _tree()
        with pytest.raises(ApplyFailed) as e:
            reconcile("/", statefile.parse(_doc("/dev/nvme-none", "127.0.0.4")), sd)
        assert e.value.rolled_back >= 1 and not e.value.rollback_errors
        assert _tree() == before
    finally:
        clear("/", sd)
    assert not os.path.exists(f"{NVMET}/subsystems/{PT}") and not os.path.exists(f"{NVMET}/ports/7")
