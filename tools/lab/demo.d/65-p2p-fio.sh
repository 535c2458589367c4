# p2p-test --engine fio: fio with its buffers in cmbA's CMB (iomem=mmapshared on p2pmem/allocate),
# one 128 KiB x QD4 cell on three namespaces at once: cmbB and cmbC behind the same switch
# (verified in both directions, p2p timed against host buffers), plain on another root port
# (refused by the kernel, explained). Exit status 3 (one namespace refused) is the expected one.
nvmet-p2p p2p-test --help 2>/dev/null | grep -q -- '--engine' || exit 77
eval "$(python3 - <<'PY'
import json, os
nv = json.load(open(os.environ["DEVMAP"]))["nvme"]
print(f"CMBA={nv['cmbA']['bdf']} CMBB_NS={nv['cmbB']['namespaces'][0]} CMBC_NS={nv['cmbC']['namespaces'][0]} "
      f"PLAIN_NS={nv['plain']['namespaces'][0]}")
PY
)"
OUT=${NVMET_P2P_LAB_RESULTS:-$(mktemp -d)}/demo-p2p-fio
echo "\$ nvmet-p2p p2p-test --engine fio $CMBA $CMBB_NS $CMBC_NS $PLAIN_NS --size 2M --offset 192M --bs 128k --qd 4 --runtime 2 --repeat 1 --allow-write --no-plots"
nvmet-p2p p2p-test --engine fio "$CMBA" "$CMBB_NS" "$CMBC_NS" "$PLAIN_NS" --size 2M --offset 192M --bs 128k \
    --qd 4 --runtime 2 --repeat 1 --allow-write --no-plots --out "$OUT"
[ $? = 3 ]
