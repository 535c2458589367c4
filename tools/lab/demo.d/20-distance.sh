# The kernel's p2pdma verdict for every (CMB provider, NVMe namespace) pair, then one refused pair in full.
nvmet-p2p distance --help >/dev/null 2>&1 || exit 77
python3 - <<'PY'
import json, os, subprocess
dm = json.load(open(os.environ["DEVMAP"]))
nv = dm["nvme"]
refused = None
print(f"{'provider':<22} {'namespace':<26} verdict")
for ps, p in sorted(nv.items()):
    if not p["p2pmem"]:
        continue
    for cs, c in sorted(nv.items()):
        ns = c["namespaces"][0]
        out = subprocess.run(["nvmet-p2p", "distance", p["bdf"], ns, "--json"], stdout=subprocess.PIPE, text=True)
        if out.returncode:
            print(f"{p['bdf']} ({ps})  {ns} ({cs}): error"); continue
        v = json.loads(out.stdout)
        print(f"{p['bdf']} ({ps:<6}) {ns:<13} ({cs:<6})  {v['map_type']}, distance {v['distance']}")
        if v["map_type"] == "not_supported" and refused is None:
            refused = (p["bdf"], ns)
if refused:
    print(f"\n$ nvmet-p2p distance {refused[0]} {refused[1]}")
    subprocess.run(["nvmet-p2p", "distance", *refused])
PY
