#!/bin/sh
# The default board's tree (QEMU virt, 1 GiB, 2 CPUs, GICv3, plus boards/virt.dtso) as a
# clean version-17 blob and two legal variants that must read the same:
#   virt-board.dtb      the tree `cargo xtask run` boots
#   virt-board.nop.dtb  one property (the UART's clock-names) turned into FDT_NOP words, as
#                       libfdt's fdt_nop_property() leaves it
#   virt-board.v16.dtb  the same tree written by `dtc -V 16` (no size_dt_struct)
# Used by the host tests (src/dt/tree/tests.rs) and the console tests that boot them.
# Needs QEMU, dtc, fdtoverlay and python3.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a72 -m 1G -smp 2 -nic none \
	-machine dumpdtb="$tmp/virt.dtb" -nographic
dtc -@ -q -I dts -O dtb -o "$tmp/board.dtbo" ../../../../boards/virt.dtso
fdtoverlay -i "$tmp/virt.dtb" -o "$tmp/board.full.dtb" "$tmp/board.dtbo"
dtc -q -I dtb -O dtb -o virt-board.dtb "$tmp/board.full.dtb"
dtc -q -I dtb -O dtb -V 16 -o virt-board.v16.dtb virt-board.dtb
python3 nop_property.py virt-board.dtb virt-board.nop.dtb clock-names
echo "virt-board.dtb, virt-board.nop.dtb, virt-board.v16.dtb written"
