#!/bin/sh
# Compile every overlay here, apply it to the DTB QEMU's virt machine builds (1 GiB, 2 CPUs,
# GICv3) and keep a compact merged blob, <name>.virt.dtb, for the host tests in
# src/dt/reserved.rs. Run after editing a .dtso; needs dtc, fdtoverlay and QEMU.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a72 -m 1G -smp 2 -nic none \
	-machine dumpdtb="$tmp/virt.dtb" -nographic
for overlay in *.dtso; do
	name=${overlay%.dtso}
	dtc -@ -q -I dts -O dtb -o "$tmp/$name.dtbo" "$overlay"
	fdtoverlay -i "$tmp/virt.dtb" -o "$tmp/$name.full.dtb" "$tmp/$name.dtbo"
	# QEMU pads its blob to 1 MiB; re-emit it compactly.
	dtc -q -I dtb -O dtb -o "$name.virt.dtb" "$tmp/$name.full.dtb"
	echo "$overlay: compiled, applied -> $name.virt.dtb"
done
