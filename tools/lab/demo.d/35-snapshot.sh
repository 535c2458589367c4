# Capture what the readers use into a directory and read it back as if it were the machine.
nvmet-p2p snapshot --help >/dev/null 2>&1 || exit 77
dir=${NVMET_P2P_LAB_RESULTS:-/tmp}/snapshot
nvmet-p2p snapshot --force "$dir" || exit 1
echo
echo "\$ nvmet-p2p doctor --root $dir | head -1     # the copy gives the same verdict"
nvmet-p2p doctor --root "$dir" | head -1
exit 0
