#!/usr/bin/env bash
# Builds the device's Debian package for the Pi (aarch64) from the binary scripts/test.sh
# cross-built, unpacks it with `dpkg -x` and checks what lands where. Usage: check-deb.sh [PROFILE]
# The test script passes `dev`: the layout does not depend on the profile, and a release build
# for aarch64 would add minutes to every run (cargo-deb warns about dev profiles; releases are
# built as the README says, with the release profile).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-dev}
PI=aarch64-unknown-linux-gnu
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo deb -p sporeprint-device --no-build --fast --target "$PI" --profile "$PROFILE" \
  --output "$out/sporeprint-device.deb" 2> >(grep -v "dev profile\|debug symbols set" >&2) >/dev/null
deb="$out/sporeprint-device.deb"
dpkg-deb --field "$deb" Package Architecture Depends >"$out/fields"
fail() { echo "check-deb: $*" >&2; exit 1; }
grep -qx "Package: sporeprint-device" "$out/fields" || fail "wrong package name: $(cat "$out/fields")"
grep -qx "Architecture: arm64" "$out/fields" || fail "not an arm64 package: $(cat "$out/fields")"

root="$out/root"
dpkg -x "$deb" "$root"
for path in usr/bin/sporeprint-device \
  usr/share/sporeprint/models/default/model.toml \
  usr/share/sporeprint/models/default/embedder.onnx \
  usr/share/sporeprint/models/default/prototypes.bin \
  usr/share/sporeprint/models/default/MODEL_CARD.md \
  etc/default/sporeprint \
  usr/lib/udev/rules.d/60-sporeprint-gadget.rules \
  usr/lib/systemd/system/sporeprint-device.service \
  usr/share/doc/sporeprint-device/PROTOCOL.md; do
  [ -e "$root/$path" ] || fail "missing /$path"
done
[ -x "$root/usr/bin/sporeprint-device" ] || fail "/usr/bin/sporeprint-device is not executable"
# Outputs are read whole before grepping: `grep -q` stops at the first match, and under pipefail
# the SIGPIPE its writer then gets would fail a check at random.
elf=$(readelf -h "$root/usr/bin/sporeprint-device")
grep -q "Machine:.*AArch64" <<<"$elf" || fail "the binary is not for aarch64"
cmp -s "$root/usr/share/sporeprint/models/default/prototypes.bin" models/default/prototypes.bin ||
  fail "the packaged table differs from models/default"
# The unit starts field mode with the installed model and keeps the table in the state directory.
unit="$root/usr/lib/systemd/system/sporeprint-device.service"
grep -q "^ExecStart=/usr/bin/sporeprint-device run" "$unit" || fail "the unit does not run field mode"
grep -q "^StateDirectory=sporeprint" "$unit" || fail "the unit has no state directory"
grep -q "^SPOREPRINT_MODEL=/usr/share/sporeprint/models/default" "$root/etc/default/sporeprint" ||
  fail "/etc/default/sporeprint does not point at the installed model"
control=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
grep -qx "./postinst" <<<"$control" || fail "no postinst (service user, udev reload)"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
grep -qx "/etc/default/sporeprint" <<<"$conffiles" ||
  fail "/etc/default/sporeprint is not a conffile (an upgrade would overwrite the user's settings)"
echo "check-deb: $(du -h "$deb" | cut -f1) package, layout ok"
