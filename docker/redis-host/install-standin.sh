#!/bin/sh
# install-standin.sh STANDIN_PY STATE_DIR [ROOT]: installs testhost/_standin.py as systemctl,
# journalctl (for everyone) and unitctl (root only) under ROOT (default /), with STATE_DIR and
# each tool's name filled into its BAKED_* placeholders, as testhost/files.py's render_script()
# does for a test host. The tests run it with a ROOT of their own.
set -eu
src=$1
state=$2
root=${3:-}
python=/usr/bin/python3

for name in BAKED_STATE_DIR BAKED_TOOL; do
  grep -q "^$name = \"\"\$" "$src" || { echo "$src: no $name placeholder" >&2; exit 1; }
done

render() { # render TOOL DEST MODE
  mkdir -p "$root$(dirname "$2")"
  { printf '#!%s\n' "$python"
    sed -e "s|^BAKED_STATE_DIR = \"\"\$|BAKED_STATE_DIR = '$state'|" \
        -e "s|^BAKED_TOOL = \"\"\$|BAKED_TOOL = '$1'|" "$src"
  } > "$root$2"
  chmod "$3" "$root$2"
}

for tool in systemctl journalctl; do
  # Should a package ever bring the real one, keep it out of the way.
  [ -n "$root" ] || dpkg-divert --quiet --local --rename --add "/usr/bin/$tool"
  render "$tool" "/usr/bin/$tool" 0755
done
render unitctl /usr/local/sbin/unitctl 0700
mkdir -p "$root$state"
chmod 0755 "$root$state"
